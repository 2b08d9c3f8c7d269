"""Learned ordering: pick the next strategy among the ones the admin listed, by their observed
success rate and time to recover on this component.

Thompson sampling draws a success probability from each entry's Beta(1 + successes, 1 + failures)
posterior; UCB1 adds an exploration bonus to the mean. Either is multiplied by a speed factor
``1 / (1 + mean_ttr / 300 s)`` so, between equally reliable strategies, the faster one wins. Only
entries passed in can be chosen: the caller filters by the admin's lists, never this module.
"""

from __future__ import annotations

import math
import random
from typing import Any

from app.healing.policy import StrategyEntry

TTR_SCALE_S = 300.0


def choose(
    entries: list[StrategyEntry],
    stats: dict[str, tuple[int, int, float]],
    *,
    method: str = "thompson",
    rng: random.Random | None = None,
) -> tuple[StrategyEntry, dict[str, Any]]:
    """``stats``: entry key -> (successes, failures, total_recover_s). Returns the choice and why."""
    if not entries:
        raise ValueError("no strategy to choose from")
    rng = rng or random.Random()
    total = sum(sum(stats.get(e.key, (0, 0, 0.0))[:2]) for e in entries)
    scored = []
    for entry in entries:
        successes, failures, recover_s = stats.get(entry.key, (0, 0, 0.0))
        n = successes + failures
        mean_ttr = recover_s / successes if successes else None
        speed = 1.0 / (1.0 + (mean_ttr or 0.0) / TTR_SCALE_S)
        if method == "ucb":
            value = float("inf") if n == 0 else successes / n + math.sqrt(2 * math.log(max(total, 1)) / n)
        else:
            value = rng.betavariate(1 + successes, 1 + failures)
        score = value * speed
        scored.append(
            (
                score,
                -entry.index,
                entry,
                {
                    "strategy": entry.key,
                    "successes": successes,
                    "failures": failures,
                    "mean_ttr_s": None if mean_ttr is None else round(mean_ttr, 3),
                    ("ucb" if method == "ucb" else "sample"): None if math.isinf(value) else round(value, 4),
                    "score": None if math.isinf(score) else round(score, 4),
                },
            )
        )
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    chosen = scored[0][2]
    why = {
        "mode": method,
        "chosen": chosen.key,
        "candidates": [s[3] for s in scored],
        "explanation": (
            f"{method}: {chosen.key} scored highest among {len(entries)} listed strategies "
            "(success posterior × speed factor from mean time to recover)"
        ),
    }
    return chosen, why
