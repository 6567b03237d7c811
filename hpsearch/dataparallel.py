"""``hpsearch train``: train ONE configuration data-parallel and log it to MLflow as its own run.

The configuration is given (``params``), or the study's best completed trial (``best=True``), or
neither (the net's defaults); the study's ``fixed`` settings apply underneath, its ``data`` section
says what to train on (``--set data.limit=null`` for all of it). The training runs on ``workers``
Spark barrier tasks (:mod:`hpsearch.backends.spark_barrier`) and lands in the study's MLflow
experiment as a run tagged ``hpsearch.kind = train`` (params, per-epoch metrics, weights), outside
any sweep. Python::

    spec = hpsearch.load_spec("studies/lenet.yaml")
    out = train_config(spec, best=True, workers=2)
    out.result.history[-1]["val_top1"], out.run_id
"""
from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError
from hpsearch.records import COMPLETE, TrialResult, TrialTask
from hpsearch.scoped import quiet_libraries

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec


@dataclass(frozen=True)
class TrainSummary:
    """What ``train_config`` did: the result, the configuration, and where it was logged."""

    result: TrialResult
    params: dict[str, Any]        # the hyperparameters given to nets (fixed ones included)
    seed: int
    workers: int
    sync_every: int
    source: str                   # "params", "defaults" or "best trial N"
    run_id: str | None = None
    tracking_uri: str | None = None
    output: str | None = None


def parse_params(text: str) -> dict[str, Any]:
    """``--params`` JSON -> a dict of single values; HpsearchError when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HpsearchError(f"--params is not JSON: {exc.msg} at character {exc.pos}",
                            """write e.g. --params '{"lr": 0.05, "batch_size": 32}'""") from None
    if not isinstance(value, dict):
        raise HpsearchError(f"--params must be a JSON object; got {type(value).__name__}",
                            """write e.g. --params '{"lr": 0.05}'""")
    for k, v in value.items():
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise HpsearchError(f"--params: {k} must be a single value; got {json.dumps(v)[:60]}")
    return value


def _configuration(spec: StudySpec, params: dict[str, Any] | None, best: bool,
                   seed: int | None, trial: int | None = None) -> tuple[dict[str, Any], int, str, int]:
    """(searched params, seed, source, trial number) of what to train."""
    if params is not None and (best or trial is not None):
        raise HpsearchError("give --params or --best, not both")
    if best or trial is not None:
        from hpsearch.study import chosen_trial
        t = chosen_trial(spec, trial)
        trial_seed = spec.seed + t.number          # the seed the sweep trained it with
        what = "best trial" if trial is None else "trial"
        return dict(t.params), trial_seed if seed is None else seed, f"{what} {t.number}", t.number
    source = "params" if params else "defaults"
    return dict(params or {}), spec.seed if seed is None else seed, source, 0


def _ranks(spec: StudySpec, workers: int | None, sync_every: int | None) -> tuple[int, int]:
    dp = spec.execution.data_parallel
    if workers is None and dp is None:
        raise HpsearchError("how many workers? the study has no execution.data_parallel block",
                            "give --workers W")
    return (dp.workers if workers is None else workers,
            (dp.sync_every if dp else 1) if sync_every is None else sync_every)


def _check_params(recipe: Any, fixed: dict[str, Any], params: dict[str, Any]) -> None:
    """Unknown names and impossible values fail here, before Spark starts."""
    from nets.errors import NetsError
    from nets.recipes import resolve_params
    known = sorted(recipe.defaults)
    for key in params:
        if key not in recipe.defaults:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            raise HpsearchError(f"--params: unknown {recipe.name} hyperparameter '{key}'",
                                (f"did you mean '{close[0]}'? " if close else "")
                                + "valid: " + ", ".join(known))
    try:
        resolve_params(recipe, {**fixed, **params})
    except NetsError as exc:
        raise HpsearchError(f"--params: {exc}") from None


@quiet_libraries()          # MLflow's INFO lines (run links, migrations) as quiet as in a sweep
def train_config(spec: StudySpec, *, params: dict[str, Any] | None = None, best: bool = False,
                 workers: int | None = None, sync_every: int | None = None, seed: int | None = None,
                 output: str | None = None, spark: Any = None, trial: int | None = None) -> TrainSummary:
    """Train one configuration of ``spec`` on ``workers`` barrier tasks; log it to MLflow.

    ``workers`` and ``sync_every`` default to the study's ``execution.data_parallel`` (K: 1).

    Raises:
        HpsearchError: bad input or setup (nothing was created); a failed training comes back
        as ``result.state == "failed"`` with its reason.
    """
    from hpsearch.backends import make_backend
    from hpsearch.recipes import load_spec_data, resolve_recipe
    from hpsearch.space import layout, net_params
    from hpsearch.spec import DataParallelSpec
    from hpsearch.tracking import TAG_KIND, TAG_STUDY, Tracker

    spec.check_runnable()
    workers, sync_every = _ranks(spec, workers, sync_every)
    if output and not Path(output).resolve().parent.is_dir():
        raise HpsearchError(f"--output {output}: no such directory", "create it first")
    searched, seed, source, number = _configuration(spec, params, best, seed, trial)
    recipe = resolve_recipe(spec.net)
    _check_params(recipe, spec.fixed, net_params(searched, layout(spec.space)))
    data = load_spec_data(spec, recipe)
    backend = make_backend("spark", parallelism=None, data=data, master=spec.execution.master,
                           study_name=f"{spec.name} train", spark=spark,
                           data_parallel=DataParallelSpec(workers, sync_every),
                           conf=spec.execution.spark_conf)
    task = TrialTask(trial_id=-1, number=number, net=spec.net, params=searched, fixed=dict(spec.fixed),
                     metric=spec.objective.metric, direction=spec.objective.direction, seed=seed,
                     epochs=spec.epochs, data_path=spec.data.path, data_limit=spec.data.limit,
                     per_layer=layout(spec.space))
    tracker = Tracker(spec, spec.tracking.uri)
    tags = {TAG_STUDY: spec.name, TAG_KIND: "train", "hpsearch.source": source,
            "mlflow.runName": f"{spec.name}-train-{time.strftime('%Y%m%d-%H%M%S')}"}
    run_id = tracker.client.create_run(tracker.experiment_id, tags=tags).info.run_id
    logged = {**task.train_params(), "workers": workers, "sync_every": sync_every, "seed": seed}
    try:
        with backend:
            (result,) = list(backend.run([task]))
    except KeyboardInterrupt:
        backend.cancel()
        tracker.client.set_terminated(run_id, status="KILLED")
        raise
    weights = result.weights if result.state == COMPLETE else None
    tracker.finish_trial(run_id, logged, result, weights)
    if output and weights is not None:
        Path(output).write_bytes(weights)
    return TrainSummary(result, task.train_params(), seed, workers, sync_every, source, run_id,
                        tracker.uri, output if weights is not None else None)
