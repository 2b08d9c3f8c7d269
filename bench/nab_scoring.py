"""NAB scoring, written from ../shared/nab/README.md (and NAB's published sweeper rules).

Importable and pure: no I/O here. ``bench/nab.py`` loads files and calls :func:`score_corpus`.

Rules implemented:
- probation: the first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a series are not scored
  (NAB caps probation at 750 rows; every file in the subset is short enough for the cap not to matter);
- a window of ``w`` rows (inclusive ends) gives the row at index ``i`` the position
  ``-(right - i + 1) / w`` in ``[-1, 0)`` and the value ``scaled_sigmoid(position)``; only the first
  (= best, since the sigmoid falls with position) detection in a window counts, weighted by TP;
- a detection outside windows is a FP: ``-1`` before the first window, otherwise the sigmoid continued
  past the previous window's end (position ``(i - right) / (w - 1)``, ``-1`` beyond 3), weighted by FP;
- a window with no detection costs ``-FN``;
- one threshold per profile for the whole corpus, chosen by sweeping every distinct score;
- normalised: null detector (never fires) = 0, perfect detector (``TP`` per window) = 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_fp": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_fn": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}

PROBATION_PERCENT = 0.15


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: ~+1 at a window's start, ~0 at its end, towards -1 well after it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(n: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


@dataclass(frozen=True)
class ScoredRow:
    """One scored (post-probation) row: its detector score, reward if detected, and window id."""

    score: float
    reward: float  # unweighted: in (0, 1) inside a window, in [-1, 0) outside
    window: int | None  # corpus-wide window id


def label_rows(n: int, windows_idx: list[tuple[int, int]]) -> list[tuple[float, int | None]]:
    """Per row: (unweighted reward, local window index or None). ``windows_idx`` are inclusive row spans."""
    out: list[tuple[float, int | None]] = []
    spans = sorted(windows_idx)
    k = 0
    prev_right: int | None = None
    prev_width = 0
    for i in range(n):
        while k < len(spans) and spans[k][1] < i:
            prev_right, prev_width = spans[k][1], spans[k][1] - spans[k][0] + 1
            k += 1
        if k < len(spans) and spans[k][0] <= i <= spans[k][1]:
            left, right = spans[k]
            width = right - left + 1
            out.append((scaled_sigmoid(-(right - i + 1) / width), k))
        elif prev_right is None:
            out.append((-1.0, None))
        else:
            out.append((scaled_sigmoid((i - prev_right) / max(prev_width - 1, 1)), None))
    return out


def build_rows(
    scores: list[float], windows_idx: list[tuple[int, int]], window_offset: int
) -> tuple[list[ScoredRow], int]:
    """Scored rows of one series; returns rows and the number of windows that have scored rows."""
    n = len(scores)
    start = probation_rows(n)
    labels = label_rows(n, windows_idx)
    rows: list[ScoredRow] = []
    seen: set[int] = set()
    for i in range(start, n):
        reward, win = labels[i]
        if win is not None:
            seen.add(win)
            rows.append(ScoredRow(scores[i], reward, window_offset + win))
        else:
            rows.append(ScoredRow(scores[i], reward, None))
    # Windows are numbered densely even if one fell inside probation; the count below only
    # includes windows that can be detected at all.
    return rows, len(seen)


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    score: float  # normalised: null = 0, perfect = 100
    tp: int
    fp: int
    fn: int


def sweep(rows: list[ScoredRow], n_windows: int, weights: dict[str, float]) -> tuple[float, float, int, int]:
    """Best (threshold, raw score, tp, fp) over all distinct thresholds (detect if score >= threshold)."""
    tp_w, fp_w, fn_w = weights["tp"], weights["fp"], weights["fn"]
    ordered = sorted(rows, key=lambda r: r.score, reverse=True)
    best_in_window: dict[int, float] = {}
    total = -fn_w * n_windows
    best = (math.inf, total, 0, 0)
    fp_count = 0
    for j, row in enumerate(ordered):
        if row.window is None:
            total += fp_w * row.reward
            fp_count += 1
        else:
            old = best_in_window.get(row.window)
            if old is None:
                best_in_window[row.window] = row.reward
                total += fn_w + tp_w * row.reward
            elif row.reward > old:
                best_in_window[row.window] = row.reward
                total += tp_w * (row.reward - old)
        last_of_tie = j + 1 == len(ordered) or ordered[j + 1].score != row.score
        if last_of_tie and total > best[1]:
            best = (row.score, total, len(best_in_window), fp_count)
    return best


def score_corpus(
    series: list[tuple[list[float], list[tuple[int, int]]]],
    profiles: dict[str, dict[str, float]] = PROFILES,
) -> dict[str, ProfileResult]:
    """``series``: per file, (scores per row, inclusive window row spans). One threshold per profile."""
    rows: list[ScoredRow] = []
    n_windows = 0
    offset = 0
    for scores, windows_idx in series:
        file_rows, detectable = build_rows(scores, windows_idx, offset)
        rows.extend(file_rows)
        n_windows += detectable
        offset += len(windows_idx)
    results = {}
    for name, weights in profiles.items():
        threshold, raw, tp, fp = sweep(rows, n_windows, weights)
        null = -weights["fn"] * n_windows
        perfect = weights["tp"] * n_windows
        norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
        results[name] = ProfileResult(name, threshold, raw, norm, tp, fp, n_windows - tp)
    return results
