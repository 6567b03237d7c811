"""hpsearch: hyperparameter search for small deep-learning models (Optuna + MLflow, local or Spark).

Python API::

    import hpsearch
    spec = hpsearch.load_spec("studies/lenet.yaml", overrides={"budget.trials": 6})
    summary = hpsearch.run_study(spec)
    print(hpsearch.best_trial(spec))

Importing hpsearch loads neither Optuna, MLflow, pyspark nor numba; they load when used.
"""
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.records import TrialResult, TrialTask
from hpsearch.scoring import register_udf
from hpsearch.spec import StudySpec, load_spec, spec_from_dict
from hpsearch.study import Observer, SweepSummary, TrialSummary, best_trial, run_study, trial_summaries

__version__ = "0.1.0"

__all__ = [
    "load_spec", "spec_from_dict", "StudySpec", "run_study", "best_trial", "trial_summaries",
    "TrialSummary", "SweepSummary", "Observer", "TrialTask", "TrialResult",
    "HpsearchError", "SpecError", "register_udf",
]
