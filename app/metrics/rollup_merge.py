"""Compaction's merges of rollup deltas: the ten-minute and hour deltas built from fresh minute
deltas (``coarse_deltas``) and many groups of encoded sketches merged at once (``merge_groups``,
vectorised with numpy; ``rollups.merge_blobs`` takes the groups it cannot). The sketch layout and the
one-sketch merge are ``rollups``'."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.metrics.rollups import (
    _FRESH_TAG,
    _MAX_BUCKETS,
    _PLAIN,
    _SPARSE,
    _SPARSE_TAG,
    COARSE_RESOLUTIONS,
    _stats,
    encode_sketch,
    merge_blobs,
)


def coarse_deltas(fresh: list) -> list[tuple]:
    """The ten-minute and hour delta rows (pending, plain tag) of fresh minute delta rows (rows of
    ``ROLLUP_COLUMNS``): per coarser bucket, its minute deltas merged. The compactor writes them in
    the transaction that takes those minute deltas, so each is counted at every level exactly once."""
    groups: dict[tuple, list] = {}
    for row in fresh:
        at = row[4].timestamp()
        for res in COARSE_RESOLUTIONS:
            groups.setdefault((res, row[1], row[2], row[3], at // res * res), []).append(row)
    out: list[tuple] = []
    merged: list[int] = []  # indexes in ``out`` of the rows merged from several deltas
    blobs: list[list[bytes]] = []
    starts: dict[float, datetime] = {}
    for (res, component, metric_name, series_key, start), rows in groups.items():
        if (when := starts.get(start)) is None:
            when = starts[start] = datetime.fromtimestamp(start, UTC)
        if len(rows) == 1:  # its statistics as they are, the sketch re-tagged
            row = rows[0]
            blob = bytes(row[10])
            out.append((res, component, metric_name, series_key, when, *row[5:10], _PLAIN + blob[1:], False))
            continue
        merged.append(len(out))
        out.append((res, component, metric_name, series_key, when))
        blobs.append([bytes(row[10]) for row in rows])
    if blobs:
        for i, fields in zip(merged, merge_groups(blobs), strict=True):
            out[i] = (*out[i], *fields, False)
    return out


def merge_groups(groups: list[list[bytes]]) -> list[tuple]:
    """Each group of encoded rollup sketches merged into one: per group (count, sum, min, max,
    sumsq, encoded sketch), as ``merge_blobs`` + ``encode_sketch`` give them, for every group at once.

    The headers are read as one structured array, the bucket counts of all groups summed after one
    sort (numpy: one code per (group, store, key), ``reduceat``), the statistics folded per group with
    the parallel formula over all of a group's parts at once (M2 = the parts' M2 + sum of
    n_i (mean_i - mean)^2); the encoded sketches are slices of two byte strings. Merging bucket by
    bucket in Python was most of compaction's CPU. A group that holds a sketch of another layout,
    counts nothing, or needs more buckets than a sketch keeps (collapsed), is merged by ``merge_blobs``."""
    import numpy as np  # here, not at import: only compaction merges groups

    out: list[tuple | None] = [None] * len(groups)
    blobs = [b for group in groups for b in group]
    size = _SPARSE.size
    if blobs and min(map(len, blobs)) >= size:
        _merge_sparse(np, groups, blobs, out)
    for g, fields in enumerate(out):
        if fields is None:
            sk = merge_blobs(groups[g])
            out[g] = (*_stats(sk), encode_sketch(sk))
    return out  # type: ignore[return-value]  # every group filled above


_HEAD = [
    ("tag", "u1"),
    ("count", "<u8"),
    ("zeros", "<u8"),
    ("sum", "<f8"),
    ("min", "<f8"),
    ("max", "<f8"),
    ("mean", "<f8"),
    ("m2", "<f8"),
    ("npos", "<u4"),
    ("nneg", "<u4"),
]


def _merge_sparse(np: Any, groups: list[list[bytes]], blobs: list[bytes], out: list) -> None:
    """``merge_groups``' vectorised part: fills ``out[g]`` for every group it can merge."""
    size = _SPARSE.size
    head = np.frombuffer(b"".join(b[:size] for b in blobs), dtype=np.dtype(_HEAD))
    sizes = np.array([len(group) for group in groups], dtype=np.int64)
    group_b = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
    sparse = (head["tag"] == _SPARSE_TAG) | (head["tag"] == _FRESH_TAG)
    n_b = np.where(sparse, head["count"].astype(np.int64), 0)
    npos_b = np.where(sparse, head["npos"].astype(np.int64), 0)
    nneg_b = np.where(sparse, head["nneg"].astype(np.int64), 0)
    mean_b, m2_b = np.where(n_b > 0, head["mean"], 0.0), np.where(n_b > 0, head["m2"], 0.0)
    starts = np.cumsum(sizes) - sizes
    nonempty = sizes > 0
    starts_ne = starts[nonempty]
    n = np.zeros(len(groups), dtype=np.int64)
    n[nonempty] = np.add.reduceat(n_b, starts_ne)
    # A group is merged here when every sketch of it has this layout and it counts something.
    ok = n > 0
    ok[nonempty] &= np.minimum.reduceat(sparse, starts_ne).astype(bool)
    safe_n = np.where(ok, n, 1)
    mean = np.zeros(len(groups))
    mean[nonempty] = np.add.reduceat(n_b * mean_b, starts_ne)
    mean /= safe_n
    # Corrected as in ``build_deltas``: the parts' weighted deviations from the first mean are its
    # error (a weighted sum added in order), taken out of both the mean and M2.
    dev = mean_b - mean[group_b]
    off, m2 = np.zeros(len(groups)), np.zeros(len(groups))
    off[nonempty] = np.add.reduceat(n_b * dev, starts_ne)
    m2[nonempty] = np.add.reduceat(m2_b + n_b * dev * dev, starts_ne)
    m2 = np.maximum(m2 - off * off / safe_n, 0.0)
    mean += off / safe_n

    def per_group(column: Any, reduce: Any, empty: Any) -> list:
        result = np.full(len(groups), empty, dtype=column.dtype)
        result[nonempty] = reduce.reduceat(column, starts_ne)
        return result.tolist()

    zeros = per_group(np.where(n_b > 0, head["zeros"].astype(np.int64), 0), np.add, 0)
    sums = per_group(np.where(n_b > 0, head["sum"], 0.0), np.add, 0.0)
    lows = per_group(np.where(n_b > 0, head["min"], np.inf), np.minimum, np.inf)
    highs = per_group(np.where(n_b > 0, head["max"], -np.inf), np.maximum, -np.inf)
    # Every sketch's tail: positive keys, their counts, then negative keys, their counts (4 bytes each).
    tail_bytes = np.array(list(map(len, blobs)), dtype=np.int64) - size
    if (tail_bytes % 4).any():
        return  # not this layout's 4-byte words somewhere: merge_blobs takes every group
    words = np.frombuffer(b"".join(b[size:] for b in blobs), dtype="<i4")
    tail_words = tail_bytes // 4
    tail_start = np.cumsum(tail_words) - tail_words
    seg_start = np.stack((tail_start, tail_start + 2 * npos_b), axis=1).ravel()
    seg_len = np.stack((npos_b, nneg_b), axis=1).ravel()
    seg_code = (np.repeat(group_b, 2) << 34) | np.tile(np.array([0, 1 << 33], dtype=np.int64), len(blobs))
    total = int(seg_len.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    at = np.repeat(seg_start, seg_len) + within
    keys = words[at].astype(np.int64)
    counts = words[at + np.repeat(seg_len, seg_len)].astype(np.int64) & 0xFFFFFFFF
    codes = np.repeat(seg_code, seg_len) | (keys + (1 << 31))
    order = np.argsort(codes)  # equal codes are summed: no need for a stable sort
    codes, counts = codes[order], counts[order]
    new_run = np.empty(total, dtype=bool)
    new_run[:1] = True
    np.not_equal(codes[1:], codes[:-1], out=new_run[1:])
    runs = np.flatnonzero(new_run)
    run_codes = codes[runs]
    run_counts = np.add.reduceat(counts, runs) if total else counts
    if total and int(run_counts.max()) > 0xFFFFFFFF:
        return  # a bucket count beyond the layout's 32 bits: merge_blobs refuses it
    run_group, run_neg = run_codes >> 34, (run_codes >> 33) & 1
    npos = np.bincount(run_group[run_neg == 0], minlength=len(groups))
    nneg = np.bincount(run_group[run_neg == 1], minlength=len(groups))
    first = (np.cumsum(npos + nneg) - npos - nneg).tolist()
    ok &= npos + nneg <= _MAX_BUCKETS  # more: collapsed like a sketch, by merge_blobs
    key_bytes = ((run_codes & ((1 << 33) - 1)) - (1 << 31)).astype("<i4").tobytes()
    count_bytes = run_counts.astype("<u4").tobytes()
    pack = _SPARSE.pack
    for g, (good, count, zero, total_sum, lo, hi, mu, m2_g, r0, p, q) in enumerate(
        zip(
            ok.tolist(),
            n.tolist(),
            zeros,
            sums,
            lows,
            highs,
            mean.tolist(),
            m2.tolist(),
            first,
            npos.tolist(),
            nneg.tolist(),
            strict=True,
        )
    ):
        if not good:
            continue
        blob = b"".join(
            (
                pack(_SPARSE_TAG, count, zero, total_sum, lo, hi, mu, m2_g, p, q),
                key_bytes[4 * r0 : 4 * (r0 + p)],
                count_bytes[4 * r0 : 4 * (r0 + p)],
                key_bytes[4 * (r0 + p) : 4 * (r0 + p + q)],
                count_bytes[4 * (r0 + p) : 4 * (r0 + p + q)],
            )
        )
        out[g] = (count, total_sum, lo, hi, m2_g + count * mu * mu, blob)
