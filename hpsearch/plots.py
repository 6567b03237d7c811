"""Plots of a study, drawn at the end of each sweep and logged to its MLflow parent run.

Four PNG files (Optuna's matplotlib visualisations, over every trial of the study so far):

- ``optimization_history.png``: the objective of each completed trial and the best so far;
- ``parallel_coordinate.png``: each completed trial's params and objective;
- ``param_importances.png``: PED-ANOVA importances (needs >= 2 completed trials), over the parameters
  every completed trial has (a conditional space's ``momentum`` or ``units_3`` is left out: an
  importance over the trials that happen to have it would compare unlike things);
- ``intermediate_values.png``: the objective after every epoch of every trial (pruning at a glance;
  Optuna has these values when the study has a pruner).

A plot that cannot be drawn (too few trials, all values equal, no epochs reported, matplotlib not
installed) is skipped with a one-line note; drawing never fails a sweep.
"""
from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("hpsearch.plots")

PLOTS = ("optimization_history", "parallel_coordinate", "param_importances", "intermediate_values")


def _complete(study: optuna.Study) -> list[Any]:
    from optuna.trial import TrialState
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _why_not(name: str, study: optuna.Study) -> str | None:
    """Why ``name`` cannot be drawn for this study (None: it can)."""
    done = _complete(study)
    if name == "intermediate_values":
        if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            return "no trial reported per-epoch values to Optuna (only with a pruner)"
        return None
    if not done:
        return "no completed trial yet"
    return _importance_problem(study, done) if name == "param_importances" else None


def _importance_problem(study: optuna.Study, done: list[Any]) -> str | None:
    if len(done) < 2:
        return f"needs >= 2 completed trials; the study has {len(done)}"
    if len({t.values[0] for t in done}) < 2:
        return "every completed trial has the same value"
    if not common_params(study):
        return "no parameter is in every completed trial"
    return None


def common_params(study: optuna.Study) -> list[str]:
    """The parameters every completed trial has (all of them, unless the space is conditional)."""
    done = _complete(study)
    names = set.intersection(*(set(t.params) for t in done)) if done else set()
    return sorted(names)


def _draw(name: str, study: optuna.Study, metric: str) -> Any:
    """The matplotlib Figure of one plot."""
    from optuna.visualization import matplotlib as ovm
    target: dict[str, Any] = {"target_name": metric} if metric else {}
    if len(study.directions) > 1:           # several objectives: these plots show the first
        target["target"] = lambda t: t.values[0]
    calls: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **target),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, **target),
        "param_importances": lambda: ovm.plot_param_importances(study, params=common_params(study),
                                                                **target),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    ax = calls[name]()
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    return first.figure


def _pyplot() -> Any:
    """pyplot on the Agg backend, unless the process already chose one (a notebook)."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def preload() -> None:
    """Import pyplot, Optuna's matplotlib plots and its fANOVA importances (scikit-learn): about
    2.5 s of CPU here, e.g. on a thread while the trials run, so that the end of a sweep does not
    wait for them. Never raises (:func:`render` reports what cannot be drawn)."""
    with suppress(Exception):   # a broken matplotlib shows up in render, as a note
        _pyplot()
        import optuna.importance  # noqa: F401 - fANOVA's scikit-learn: 1.6 s of the 2.5
        import optuna.visualization.matplotlib  # noqa: F401


def render(study: optuna.Study, out_dir: str | Path, metric: str = "") -> tuple[list[Path], list[str]]:
    """Draw the four plots of ``study`` as PNG files in ``out_dir``.

    Returns:
        (the files written, one note per plot that was skipped and why).
    """
    try:
        plt = _pyplot()
    except ImportError:
        return [], ["plots skipped: matplotlib is not installed (pip install 'hpsearch[plots]')"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    notes: list[str] = []
    for name in PLOTS:
        why = _why_not(name, study)
        if why is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # Optuna's ExperimentalWarning, empty-plot notes
                    fig = _draw(name, study, metric)
                    try:
                        fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
                    finally:
                        plt.close(fig)
                files.append(out / f"{name}.png")
                continue
            except Exception as exc:  # noqa: BLE001 - a plot must never fail the sweep
                why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        notes.append(f"{name} skipped: {why}")
        log.info("plot %s skipped: %s", name, why)
    return files, notes
