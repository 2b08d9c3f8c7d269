"""NAB generalisation check: held-out (cross-validated) score and parameter sensitivity (not a test).

    .venv/bin/python bench/nab_cv.py [--nab-dir DIR] [--repeats N] [--random N] [--quick]

``bench/nab.py`` reports the score on the files the detector was developed on, with the threshold
chosen on those same files: an in-sample figure. This script asks how much of it survives on
series the choices never saw:

- **Held-out score.** The files are split into folds; on the training folds only, a detector
  configuration (from the candidate set below) and, per profile, the corpus threshold are chosen
  to maximise the NAB score; the held-out files are then scored with exactly those choices. The
  raw held-out totals of all folds are pooled and normalised like one corpus (null 0, perfect 100).
  Two split schemes: leave-one-category-out (a category is a ``data/`` subdirectory: the held-out
  fold is a kind of series the choices never saw), and repeated 5-fold over files stratified by
  category (mean, min and max over the repeats). "threshold only" keeps the default configuration
  and transfers only the threshold; "config + threshold" also selects the configuration. "held-out
  config, NAB threshold" is how NAB would score a detector fixed in advance: every file is scored
  by the configuration chosen without it, and the threshold is then chosen over all files (for
  the fixed default configuration that is the in-sample figure). The in-sample score is also
  printed at multiples of its threshold: a sharp optimum transfers badly.
- **Sensitivity.** One parameter at a time, around the defaults, by the factors in ``SWEEP``
  (the candidate set above is this same grid), and ``--random`` joint perturbations of all of
  them (each by a log-uniform factor within the sweep's range). In-sample standard score per
  setting, and its range.

The same is printed for the windowed-Gaussian baseline (threshold-only CV; it has one parameter).
Caveat: the defaults and the grid's centre were themselves chosen by looking at the whole subset,
so the CV measures how well choices made *within the grid* transfer, not the designer's choices;
leave-one-category-out is the harder, more honest of the two.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nab import DEFAULT_NAB_DIR, WindowedGaussian, load_corpus  # noqa: E402  needs the sys.path entries above
from nab_designs import designs, fold_summary  # noqa: E402  needs the sys.path entries above
from nab_scoring import PROFILES, label_rows, probation_rows, score_corpus  # noqa: E402  needs the sys.path entries above

from app.detection.anomaly import AnomalyDetector  # noqa: E402  needs the sys.path entries above

# Multiplicative steps around each default (rounded for ints). Parameters absent from the
# detector's signature are skipped, so the sweep follows the detector as it changes.
SWEEP: dict[str, tuple[float, ...]] = {
    "window": (0.5, 0.75, 1.5, 2.0),
    "block": (0.5, 0.75, 1.5, 2.0),
    "nblocks": (0.5, 0.75, 1.5, 2.0),
    "tau": (0.33, 0.67, 1.5, 3.0),
    "refractory": (0.5, 0.75, 1.5, 2.0),
    "min_history": (0.5, 2.0),
    "smooth": (0.5, 0.75, 1.5, 2.0),
    "nseasons": (0.34, 0.67, 1.67),
    "margin": (0.5, 2.0),
}

Config = tuple[tuple[str, float], ...]
Row = tuple[float, float, int | None]  # (score, unweighted reward, corpus-wide window id or None)


# --- scoring on compact rows ------------------------------------------------------------------
class File:
    """One NAB file with its per-row labels precomputed (post-probation)."""

    def __init__(
        self, index: int, name: str, ts: list[float], vals: list[float], spans: list[tuple[int, int]]
    ) -> None:
        self.index = index
        self.name = name
        self.category = name.split("/", 1)[0]
        self.ts, self.vals, self.spans = ts, vals, spans
        n = len(vals)
        self.start = probation_rows(n)
        self.labels = [
            (r, None if w is None else index * 1000 + w) for r, w in label_rows(n, spans)[self.start :]
        ]
        self.n_windows = len({w for _, w in self.labels if w is not None})

    def rows(self, scores: Sequence[float]) -> list[Row]:
        """Rows that can ever be detected (score > 0): a threshold <= 0 fires on every point."""
        return [(s, r, w) for s, (r, w) in zip(scores[self.start :], self.labels, strict=True) if s > 0.0]


def sweep(rows: list[Row], n_windows: int, w: dict[str, float]) -> tuple[float, float]:
    """Best (threshold, raw) over the distinct positive scores; as ``nab_scoring.sweep``."""
    tp_w, fp_w, fn_w = w["tp"], w["fp"], w["fn"]
    ordered = sorted(rows, key=lambda r: r[0], reverse=True)
    best_in: dict[int, float] = {}
    total = -fn_w * n_windows
    best = (math.inf, total)
    for j, (s, reward, win) in enumerate(ordered):
        if win is None:
            total += fp_w * reward
        else:
            old = best_in.get(win)
            if old is None:
                best_in[win] = reward
                total += fn_w + tp_w * reward
            elif reward > old:
                best_in[win] = reward
                total += tp_w * (reward - old)
        if (j + 1 == len(ordered) or ordered[j + 1][0] != s) and total > best[1]:
            best = (s, total)
    return best


def raw_at(rows: list[Row], n_windows: int, w: dict[str, float], threshold: float) -> float:
    """Raw NAB total of ``rows`` detected at ``threshold``."""
    best_in: dict[int, float] = {}
    total = -w["fn"] * n_windows
    for s, reward, win in rows:
        if s < threshold:
            continue
        if win is None:
            total += w["fp"] * reward
        elif reward > best_in.get(win, -2.0):
            best_in[win] = reward
    return total + sum(w["fn"] + w["tp"] * r for r in best_in.values())


def normalise(raw: float, n_windows: int, w: dict[str, float]) -> float:
    null, perfect = -w["fn"] * n_windows, w["tp"] * n_windows
    return 100.0 * (raw - null) / (perfect - null) if n_windows else 0.0


# --- running detectors (cached per configuration) ------------------------------------------------
class Runner:
    def __init__(self, files: list[File], make: Callable[[Config], object]) -> None:
        self.files = files
        self.make = make
        self.rows: dict[Config, list[list[Row]]] = {}
        self.us: dict[Config, float] = {}

    def get(self, cfg: Config) -> list[list[Row]]:
        if cfg not in self.rows:
            out = []
            elapsed = 0.0
            points = 0
            for f in self.files:
                score = self.make(cfg).score  # type: ignore[attr-defined]
                t0 = time.perf_counter()
                scores = [score(t, v) for t, v in zip(f.ts, f.vals, strict=True)]
                elapsed += time.perf_counter() - t0
                points += len(scores)
                out.append(f.rows(scores))
            self.rows[cfg] = out
            self.us[cfg] = 1e6 * elapsed / points
        return self.rows[cfg]

    def in_sample(
        self, cfg: Config, profile: str = "standard", subset: Sequence[int] | None = None
    ) -> tuple[float, float]:
        """(normalised score, threshold) on ``subset`` (default all files), threshold chosen there."""
        idx = range(len(self.files)) if subset is None else subset
        per_file = self.get(cfg)
        rows = [r for i in idx for r in per_file[i]]
        nw = sum(self.files[i].n_windows for i in idx)
        thr, raw = sweep(rows, nw, PROFILES[profile])
        return normalise(raw, nw, PROFILES[profile]), thr


def best_on_training(runner: Runner, candidates: list[Config], test: list[int]) -> tuple[list[int], Config]:
    """The training files (all but ``test``) and the candidate with the best standard score on them
    (ties keep the earlier candidate, i.e. the default)."""
    test_set = set(test)
    train = [i for i in range(len(runner.files)) if i not in test_set]
    best_cfg, best_score = candidates[0], -math.inf
    for cfg in candidates:
        score, _ = runner.in_sample(cfg, "standard", train)
        if score > best_score + 1e-9:
            best_cfg, best_score = cfg, score
    return train, best_cfg


def cross_validate(
    runner: Runner, candidates: list[Config], folds: list[list[int]]
) -> tuple[dict[str, float], list[tuple[Config, float]]]:
    """Pooled held-out normalised score per profile; per fold the (config, standard threshold) chosen.

    The configuration is chosen by the standard score on the training files (ties: the earlier
    candidate, i.e. the default first); each profile's threshold is then chosen on the training
    files for that configuration."""
    files = runner.files
    total_windows = sum(f.n_windows for f in files)
    pooled = dict.fromkeys(PROFILES, 0.0)
    choices = []
    for test in folds:
        train, best_cfg = best_on_training(runner, candidates, test)
        per_file = runner.get(best_cfg)
        test_rows = [r for i in test for r in per_file[i]]
        test_nw = sum(files[i].n_windows for i in test)
        for p, w in PROFILES.items():
            _, thr = runner.in_sample(best_cfg, p, train)
            pooled[p] += raw_at(test_rows, test_nw, w, thr) + w["fn"] * test_nw  # minus the null
            if p == "standard":
                choices.append((best_cfg, thr))
    # pooled holds sum(raw - null) per profile; normalise over the whole corpus
    out = {p: 100.0 * pooled[p] / ((w["tp"] + w["fn"]) * total_windows) for p, w in PROFILES.items()}
    return out, choices


def nab_protocol(runner: Runner, candidates: list[Config], folds: list[list[int]]) -> dict[str, float]:
    """As NAB itself scores a fixed detector: each file is scored by the configuration chosen on
    the folds that do not contain it, then one threshold per profile is chosen over all files."""
    files = runner.files
    rows: list[Row] = []
    for test in folds:
        _, best_cfg = best_on_training(runner, candidates, test)
        per_file = runner.get(best_cfg)
        rows.extend(r for i in test for r in per_file[i])
    nw = sum(f.n_windows for f in files)
    return {p: normalise(sweep(rows, nw, w)[1], nw, w) for p, w in PROFILES.items()}


def threshold_curve(runner: Runner, cfg: Config, factors: Sequence[float]) -> list[tuple[float, float]]:
    """Standard score at multiples of the in-sample threshold: how flat the optimum is."""
    _, thr = runner.in_sample(cfg)
    rows = [r for per_file in runner.get(cfg) for r in per_file]
    nw = sum(f.n_windows for f in runner.files)
    w = PROFILES["standard"]
    return [(f * thr, normalise(raw_at(rows, nw, w, f * thr), nw, w)) for f in factors]


def category_folds(files: list[File]) -> list[list[int]]:
    cats = sorted({f.category for f in files})
    return [[f.index for f in files if f.category == c] for c in cats]


def stratified_folds(files: list[File], k: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in sorted({f.category for f in files}):
        members = [f.index for f in files if f.category == c]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[(offset + j) % k].append(i)
        offset += len(members)
    return [f for f in folds if f]


# --- configurations -----------------------------------------------------------------------------
def defaults() -> dict[str, float]:
    sig = inspect.signature(AnomalyDetector.__init__)
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if name in SWEEP and isinstance(p.default, (int, float))
    }


def config(**values: float) -> Config:
    return tuple(sorted(values.items()))


def perturbed(base: dict[str, float], name: str, factor: float) -> float:
    v = base[name] * factor
    return max(1, round(v)) if isinstance(base[name], int) else round(v, 6)


def detector_factory(cfg: Config) -> AnomalyDetector:
    return AnomalyDetector(**dict(cfg))


def fmt_cfg(cfg: Config, base: dict[str, float]) -> str:
    diff = [f"{k}={v:g}" for k, v in cfg if base.get(k) != v]
    return ", ".join(diff) or "defaults"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab-dir", type=Path, default=Path(os.environ.get("PIPELINE_NAB_DIR", DEFAULT_NAB_DIR)))
    ap.add_argument("--repeats", type=int, default=5, help="repeats of stratified 5-fold CV")
    ap.add_argument("--random", type=int, default=16, help="joint random perturbations")
    ap.add_argument("--quick", action="store_true", help="threshold-only CV, no sweep")
    ap.add_argument(
        "--designs-only",
        action="store_true",
        help="only the side-by-side table of designs (service default, alternatives, baseline)",
    )
    args = ap.parse_args(argv)
    if not (args.nab_dir / "data").is_dir():
        print(f"NAB data not found under {args.nab_dir}", file=sys.stderr)
        return 2
    corpus = load_corpus(args.nab_dir)
    files = [File(i, *c) for i, c in enumerate(corpus)]
    base = defaults()
    default_cfg = config(**base)
    ours = Runner(files, detector_factory)
    gauss = Runner(files, lambda cfg: WindowedGaussian(**dict(cfg)))
    gauss_cfg = config(window=6400)

    # sanity: the compact scorer agrees with bench/nab_scoring.py on the full corpus
    full = score_corpus([(_scores(f, ours, default_cfg), f.spans) for f in files])
    mine = {p: ours.in_sample(default_cfg, p)[0] for p in PROFILES}
    for p in PROFILES:
        assert abs(full[p].score - mine[p]) < 1e-6, (p, full[p].score, mine[p])

    print(
        f"NAB subset: {len(files)} files in {len(category_folds(files))} categories, "
        f"{sum(f.n_windows for f in files)} windows; defaults: "
        + ", ".join(f"{k}={v:g}" for k, v in sorted(base.items()))
    )
    print(f"{'':<60} {'standard':>9} {'low-FP':>8} {'low-FN':>8}")
    row = "{:<60} {:9.1f} {:8.1f} {:8.1f}"
    print(row.format("in-sample (threshold chosen on all files)", *mine.values()))
    g_in = {p: gauss.in_sample(gauss_cfg, p)[0] for p in PROFILES}
    print(row.format("  w.Gaussian in-sample", *g_in.values()))
    curve = threshold_curve(ours, default_cfg, (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5))
    print(
        "  detector's standard score at other thresholds: "
        + "  ".join(f"{t:.3g}: {v:.1f}" for t, v in curve if t <= 1.0)
    )

    designs_table(files)
    if args.designs_only:
        return 0

    # sensitivity grid (also the CV's candidate set)
    oat: list[tuple[str, float, Config]] = []
    for name, factors in SWEEP.items():
        if name not in base:
            continue
        for fac in factors:
            v = perturbed(base, name, fac)
            if v != base[name]:
                oat.append((name, v, config(**{**base, name: v})))
    candidates = [default_cfg] + [c for _, _, c in oat]

    schemes = [("leave-one-category-out", [category_folds(files)])]
    schemes.append(
        (
            f"stratified 5-fold x{args.repeats}",
            [stratified_folds(files, 5, seed) for seed in range(args.repeats)],
        )
    )
    for label, fold_sets in schemes:
        modes = [("threshold only", [default_cfg])]
        if not args.quick:
            modes.append(("config + threshold", candidates))
        for mode, cands in modes:
            results = [cross_validate(ours, cands, folds) for folds in fold_sets]
            _print_cv(row, f"held-out, {label}, {mode}", results)
            if label.startswith("leave") and mode != "threshold only":
                for cat_idx, (cfg, thr) in zip(category_folds(files), results[0][1], strict=True):
                    print(
                        f"    held out {files[cat_idx[0]].category:<22} chose {fmt_cfg(cfg, base)}"
                        f" @ {thr:.3f}"
                    )
            if mode != "threshold only":
                nab = [nab_protocol(ours, cands, folds) for folds in fold_sets]
                _print_cv(row, f"held-out config, NAB threshold, {label}", [(r, []) for r in nab])
        g = [cross_validate(gauss, [gauss_cfg], folds) for folds in fold_sets]
        _print_cv(row, f"  w.Gaussian, {label}, threshold only", g)

    if not args.quick:
        print(f"\nSensitivity (in-sample standard score; default {mine['standard']:.1f}):")
        scores = []
        for name in SWEEP:
            if name not in base:
                continue
            cells = []
            for n2, v, cfg in oat:
                if n2 == name:
                    s = ours.in_sample(cfg)[0]
                    scores.append(s)
                    cells.append(f"{v:g}: {s:.1f}")
            print(f"  {name:<16} (default {base[name]:g})  " + "   ".join(cells))
        print(
            f"  one-at-a-time range: {min(scores):.1f} .. {max(scores):.1f} (default {mine['standard']:.1f})"
        )
        if args.random:
            rng = random.Random(1)
            joint = []
            for _ in range(args.random):
                vals = {}
                for name, factors in SWEEP.items():
                    if name in base:
                        lo, hi = math.log(min(factors)), math.log(max(factors))
                        vals[name] = perturbed(base, name, math.exp(rng.uniform(lo, hi)))
                joint.append(ours.in_sample(config(**vals))[0])
            print(
                f"  joint random perturbations (n={len(joint)}): min {min(joint):.1f}, "
                f"median {statistics.median(joint):.1f}, max {max(joint):.1f}"
            )
    print(
        f"µs per point (default config): detector {ours.us[default_cfg]:.2f}, "
        f"windowed Gaussian {gauss.us[gauss_cfg]:.2f}"
    )
    return 0


def held_out_folds(
    runner: Runner, folds: list[list[int]]
) -> tuple[dict[str, float], dict[str, float | None], int]:
    """Leave-one-category-out with the threshold transferred from the other categories: pooled
    scores per profile, each held-out category's own standard score (None if it has no window),
    and the false alarms in categories without windows."""
    pooled, choices = cross_validate(runner, [()], folds)
    per_fold: dict[str, float | None] = {}
    false_alarms = 0
    w = PROFILES["standard"]
    for test, (_, thr) in zip(folds, choices, strict=True):
        rows = [r for i in test for r in runner.get(())[i]]
        nw = sum(runner.files[i].n_windows for i in test)
        cat = runner.files[test[0]].category
        per_fold[cat] = normalise(raw_at(rows, nw, w, thr), nw, w) if nw else None
        if not nw:
            false_alarms += sum(1 for sc, _, _ in rows if sc >= thr)
    return pooled, per_fold, false_alarms


def designs_table(files: list[File]) -> None:
    """The service's detector beside the alternatives and the baseline: in-sample, held-out by
    category (pooled, then per category: mean ± spread [range]), cost."""
    folds = category_folds(files)
    cats = [files[f[0]].category for f in folds]
    print("\nDesigns side by side (held out = leave-one-category-out, threshold from the other categories):")
    head = (
        f"{'design':<34} {'in-sample std/lowFP':>19} {'held-out std/lowFP/lowFN':>25}  "
        f"{'per held-out category: mean ± sd [range]':<40} {'FAs':>4} {'µs/pt':>6}"
    )
    print(head)
    for label, make in designs(WindowedGaussian):
        runner = Runner(files, lambda _cfg, make=make: make())
        ins = [runner.in_sample((), p)[0] for p in ("standard", "reward_low_fp")]
        pooled, per_fold, fas = held_out_folds(runner, folds)
        print(
            f"{label:<34} {ins[0]:9.1f}/{ins[1]:<9.1f} {pooled['standard']:10.1f}/"
            f"{pooled['reward_low_fp']:.1f}/{pooled['reward_low_fn']:.1f}      "
            f"{fold_summary(per_fold):<40} {fas:>4} {runner.us[()]:6.1f}"
        )
        print(
            "    "
            + "  ".join(
                f"{c}: {'-' if v is None else f'{v:.1f}'}"
                for c, v in zip(cats, per_fold.values(), strict=False)
            )
        )
    print("(FAs: detections at the transferred threshold in held-out categories without windows)")


def _scores(f: File, runner: Runner, cfg: Config) -> list[float]:
    det = runner.make(cfg)
    return [det.score(t, v) for t, v in zip(f.ts, f.vals, strict=True)]  # type: ignore[attr-defined]


def _print_cv(row: str, label: str, results: list[tuple[dict[str, float], list]]) -> None:
    if len(results) == 1:
        print(row.format(label, *results[0][0].values()))
        return
    means = [statistics.fmean(r[0][p] for r in results) for p in PROFILES]
    print(row.format(label + " (mean)", *means))
    std = [r[0]["standard"] for r in results]
    print(f"    standard over repeats: min {min(std):.1f}, max {max(std):.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
