"""How many trials run at once: decided by the backend, judged here, in one place."""
from __future__ import annotations

import os

ADAPTIVE = {"tpe", "cmaes", "gp"}


def parallelism_notes(parallelism: int, slots: int | None, trials: int | None,
                      sampler: str) -> list[str]:
    """Warnings, with the numbers, about a parallelism that wastes slots or starves the sampler."""
    notes = []
    slots = slots or os.cpu_count() or 1
    if parallelism > slots:
        notes.append(f"parallelism {parallelism} > {slots} task slots: trials will queue or share "
                     f"cores, and each runs slower")
    if trials and sampler in ADAPTIVE and parallelism > max(2, trials // 4):
        notes.append(f"parallelism {parallelism} for a budget of {trials} trials: the {sampler} "
                     f"sampler learns only from finished trials, and {parallelism} start at once "
                     f"(at most {max(2, trials // 4)} would leave it {trials - max(2, trials // 4)} "
                     f"informed choices)")
    return notes
