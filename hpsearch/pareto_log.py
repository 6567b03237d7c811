"""A multi-objective sweep's Pareto set in MLflow: a table and a plot on the parent run, and the
tag ``hpsearch.pareto`` (``true``/``false``) on every completed trial's child run.

On the parent run: ``pareto/pareto_set.json`` (an MLflow table: trial, run id, every objective,
the params), ``pareto/pareto_set.csv`` (the same), ``pareto/pareto_front.png`` (two objectives: every
completed trial and the front as a step line; three or more: one panel per pair of objectives, with
that pair's front) and the tags ``hpsearch.pareto_trials`` (the front's trial numbers) and
``hpsearch.objectives`` (``val_top1 (maximize), infer_ms (minimize)``).
"""
from __future__ import annotations

import csv
import io
import itertools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.pareto import front_trials, pareto_indices

if TYPE_CHECKING:
    import optuna

    from hpsearch.spec import StudySpec
    from hpsearch.tracking import Tracker

TAG = "hpsearch.pareto"


def log_front(tracker: Tracker, study: optuna.Study, spec: StudySpec,
              note: Callable[[str], None] = lambda _text: None) -> None:
    """Log the study's Pareto set to the sweep's parent run and tag the children. Never raises: a
    failure is a note (the sweep's record stands without it)."""
    if tracker.parent_id is None:
        return
    try:
        _log(tracker, study, spec)
    except Exception as exc:  # noqa: BLE001 - the front is a view of the record, not the record
        note(f"MLflow: Pareto set not logged: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def table(study: optuna.Study, metrics: tuple[str, ...]) -> dict[str, list[Any]]:
    """The Pareto set as columns: trial, run id, each objective, each param."""
    front = front_trials(study)
    names = sorted({k for t in front for k in t.params})
    cols: dict[str, list[Any]] = {"trial": [t.number for t in front],
                                  "run_id": [t.user_attrs.get("mlflow_run_id", "") for t in front]}
    for i, m in enumerate(metrics):
        cols[m] = [t.values[i] for t in front]
    for k in names:
        cols[k] = [t.params.get(k) for t in front]
    return cols


def _log(tracker: Tracker, study: optuna.Study, spec: StudySpec) -> None:
    from optuna.trial import TrialState
    client, parent = tracker.client, tracker.parent_id
    metrics = spec.objective.metrics
    cols = table(study, metrics)
    client.log_table(parent, data=cols, artifact_file="pareto/pareto_set.json")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(cols))
    writer.writerows(zip(*cols.values()))
    client.log_text(parent, out.getvalue(), "pareto/pareto_set.csv")
    on_front = set(cols["trial"])
    client.set_tag(parent, "hpsearch.pareto_trials", ",".join(map(str, sorted(on_front))) or "-")
    client.set_tag(parent, "hpsearch.objectives", ", ".join(
        f"{m} ({d})" for m, d in zip(metrics, spec.objective.directions)))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for t in done:
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, TAG, "true" if t.number in on_front else "false")
    if getattr(spec.tracking, "plots", True) and done:
        with tempfile.TemporaryDirectory(prefix="hpsearch-pareto-") as tmp:
            path = Path(tmp) / "pareto_front.png"
            plot(done, metrics, list(spec.objective.directions), path)
            client.log_artifact(parent, str(path), "pareto")


def plot(trials: list[optuna.trial.FrozenTrial], metrics: tuple[str, ...], directions: list[str],
         path: Path) -> None:
    """Every completed trial and the front: one scatter for two objectives, every pair for more."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")      # no display on a driver
    import matplotlib.pyplot as plt
    pairs = list(itertools.combinations(range(len(metrics)), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        pts = [(t.values[i], t.values[j]) for t in trials]
        front = sorted(pts[k] for k in pareto_indices(pts, [directions[i], directions[j]]))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, c="tab:gray", label="completed trials")
        # the front's attainment boundary: along x ascending, a minimised x steps after each point
        ax.plot([p[0] for p in front], [p[1] for p in front], "o-", c="tab:red", label="Pareto front",
                drawstyle="steps-post" if directions[i] == "minimize" else "steps-pre")
        ax.set_xlabel(f"{metrics[i]} ({directions[i]})")
        ax.set_ylabel(f"{metrics[j]} ({directions[j]})")
        ax.legend(fontsize=8)
    fig.suptitle(f"Pareto front ({len(trials)} completed trials)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
