"""Pareto sets: dominance, non-dominated sorting and crowding distance (the benchmarks measure
hypervolume with Optuna's own).

Points are sequences of objective values; ``directions`` says, for each objective, ``minimize`` or
``maximize``. Everything is computed on *costs* (maximized objectives negated), so "smaller is better"
everywhere below. Pure Python: the sets here are a study's trials (tens to thousands).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

Point = Sequence[float]


def costs(points: Sequence[Point], directions: Sequence[str]) -> list[tuple[float, ...]]:
    """``points`` with every maximized objective negated (all objectives minimized)."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    return [tuple(s * float(v) for s, v in zip(signs, p)) for p in points]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every cost and better in at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def fronts(cs: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting (Deb et al. 2002): the indices of ``cs``, front by front (the first is
    the Pareto set). Equal points share a front."""
    n = len(cs)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(cs[i], cs[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(cs[j], cs[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out, current = [], [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return out


def crowding(cs: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """Crowding distance of each index of ``front`` (NSGA-II): for every objective, the gap between
    its two neighbours along that objective, normalised by the front's range; the extremes get inf."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for k in range(len(cs[front[0]])):
        order = sorted(front, key=lambda i: (cs[i][k], i))
        lo, hi = cs[order[0]][k], cs[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (cs[b][k] - cs[a][k]) / (hi - lo)
    return dist


def ranking(cs: Sequence[Point]) -> list[int]:
    """Indices of ``cs`` best first: by non-dominated front, then (within a front) by crowding
    distance, largest first (the spread-out points of a front before the crowded ones), then by
    index (older first). This is the order MO-ASHA promotes in."""
    order: list[int] = []
    for front in fronts(cs):
        dist = crowding(cs, front)
        order.extend(sorted(front, key=lambda i: (-dist[i], i)))
    return order


def pareto_indices(points: Sequence[Point], directions: Sequence[str]) -> list[int]:
    """The indices of the non-dominated points (in order)."""
    if not points:
        return []
    return sorted(fronts(costs(points, directions))[0])


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """A multi-objective study's Pareto set: its non-dominated completed trials, by number."""
    from optuna.trial import TrialState
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                  key=lambda t: t.number)
    directions = [d.name.lower() for d in study.directions]
    return [done[i] for i in pareto_indices([t.values for t in done], directions)]
