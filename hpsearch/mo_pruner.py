"""MO-ASHA: asynchronous successive halving for multi-objective studies (Schmucker et al. 2021).

Optuna's ``trial.report`` raises for multi-objective studies, so the driver's decider
(:func:`hpsearch.pruning.study_decider`) stores every objective's value at each epoch in the trial's
user attrs (:func:`record`, key ``mo_epoch:<epoch>``) and asks :class:`MOASHAPruner`.

Rungs are the epochs ``min_resource * reduction_factor**k`` below ``max_resource``. When a trial
reaches a rung it is compared with every trial that reached that rung before it (asynchronously:
no waiting for a full rung). They are ranked by non-dominated sorting; within a front, by crowding
distance (largest first), then by trial number (older first) -- see :func:`hpsearch.pareto.ranking`.
The trial goes on when it ranks in the top ``max(1, n // reduction_factor)`` of the ``n`` trials at
the rung; otherwise it is pruned.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.pruners import BasePruner

from hpsearch.pareto import costs, ranking

if TYPE_CHECKING:
    import optuna

PREFIX = "mo_epoch:"


def record(study: optuna.Study, trial_id: int, epoch: int, values: list[float]) -> None:
    """Store one epoch's objective values on the trial (the pruner reads them back)."""
    import optuna
    optuna.trial.Trial(study, trial_id).set_user_attr(f"{PREFIX}{epoch}", [float(v) for v in values])


def epoch_values(trial: optuna.trial.FrozenTrial, epoch: int) -> list[float] | None:
    """The objective values ``trial`` reported at ``epoch`` (None when it did not reach it)."""
    return trial.user_attrs.get(f"{PREFIX}{epoch}")


def last_epoch(trial: optuna.trial.FrozenTrial) -> int:
    """The last epoch ``trial`` reported (0: none)."""
    return max((int(k[len(PREFIX):]) for k in trial.user_attrs if k.startswith(PREFIX)), default=0)


class MOASHAPruner(BasePruner):
    """Asynchronous successive halving ranked by non-dominated sorting (see the module docstring).

    Args:
        min_resource: the first rung, in epochs.
        reduction_factor: eta: 1/eta of the trials at a rung go on.
        max_resource: the most epochs a trial runs (no rung at or past it); None: no limit.
    """

    def __init__(self, min_resource: int = 1, reduction_factor: int = 3,
                 max_resource: int | None = None) -> None:
        if min_resource < 1 or reduction_factor < 2:
            raise ValueError("min_resource must be >= 1 and reduction_factor >= 2")
        self.min_resource, self.eta, self.max_resource = min_resource, reduction_factor, max_resource

    def is_rung(self, epoch: int) -> bool:
        if self.max_resource is not None and epoch >= self.max_resource:
            return False
        r = self.min_resource
        while r < epoch:
            r *= self.eta
        return r == epoch

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = last_epoch(trial)
        if epoch == 0 or not self.is_rung(epoch):
            return False
        rivals = [t for t in study.get_trials(deepcopy=False)
                  if t.number != trial.number and epoch_values(t, epoch) is not None]
        at_rung = sorted([trial, *rivals], key=lambda t: t.number)
        directions = [d.name.lower() for d in study.directions]
        order = ranking(costs([epoch_values(t, epoch) for t in at_rung], directions))
        keep = max(1, len(at_rung) // self.eta)
        return order.index(at_rung.index(trial)) >= keep

    def describe(self) -> dict[str, Any]:
        return {"min_resource": self.min_resource, "reduction_factor": self.eta,
                "max_resource": self.max_resource}
