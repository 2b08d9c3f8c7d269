"""Mergeable quantile sketch for metric rollups (DDSketch, Masson et al., VLDB 2019).

Positive values go to bucket ``ceil(log_gamma(x))`` with ``gamma = (1 + α) / (1 - α)``; a bucket's
representative ``2 γ^i / (γ + 1)`` is then within ``α`` relative of every value in it, so any
quantile is within ``α`` relative of the true (lower) quantile. Negative values use a mirrored store,
and zeros (|x| < ``min_value``) a counter. The number of buckets is bounded: beyond ``max_buckets``
the lowest buckets are collapsed into one (the guarantee then holds for the upper quantiles, which
are the ones alerts look at). Count, sum, min, max and the sum of squares are kept exactly, so mean
and stddev are exact; the sum of squares uses Welford's M2 merge, which stays accurate for large means.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

# version, alpha, max_buckets, min_value, count, sum, min, max, mean, m2, zeros, pos lo/len, neg lo/len
_HEADER = struct.Struct("<BdIdQdddddQiIiI")
_VERSION = 1


class QuantileSketch:
    def __init__(
        self, relative_accuracy: float = 0.005, max_buckets: int = 2048, min_value: float = 1e-9
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.alpha = relative_accuracy
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.max_buckets = max_buckets
        self.min_value = min_value
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._mean = 0.0
        self._m2 = 0.0

    # --- adding ------------------------------------------------------------------------------
    def _key(self, x: float) -> int:
        return math.ceil(math.log(x) / self._log_gamma)

    def add(self, value: float) -> None:
        x = float(value)
        if not math.isfinite(x):
            raise ValueError("sketch values must be finite")
        if x > self.min_value:
            k = self._key(x)
            self.pos[k] = self.pos.get(k, 0) + 1
        elif x < -self.min_value:
            k = self._key(-x)
            self.neg[k] = self.neg.get(k, 0) + 1
        else:
            self.zero_count += 1
        self.count += 1
        self.sum += x
        self.min = min(self.min, x)
        self.max = max(self.max, x)
        d = x - self._mean
        self._mean += d / self.count
        self._m2 += d * (x - self._mean)
        if len(self.pos) + len(self.neg) > self.max_buckets:
            self._collapse()

    def add_many(self, values: Iterable[float]) -> None:
        """Bulk add: one pass with local variables, statistics folded in with the parallel formula."""
        vals = [float(v) for v in values]
        if not vals:
            return
        if not all(map(math.isfinite, vals)):
            raise ValueError("sketch values must be finite")
        log, inv, ceil, mv = math.log, 1.0 / self._log_gamma, math.ceil, self.min_value
        pos, neg = self.pos, self.neg
        zeros = 0
        for x in vals:
            if x > mv:
                k = ceil(log(x) * inv)
                pos[k] = pos.get(k, 0) + 1
            elif x < -mv:
                k = ceil(log(-x) * inv)
                neg[k] = neg.get(k, 0) + 1
            else:
                zeros += 1
        self.zero_count += zeros
        n = len(vals)
        s = math.fsum(vals)
        mean = s / n
        dev = [v - mean for v in vals]
        off = math.fsum(dev)  # the rounded mean's error, times n: taken out of M2 (corrected two-pass)
        m2 = max(math.fsum(d * d for d in dev) - off * off / n, 0.0)
        self._fold_stats(n, s, min(vals), max(vals), mean, m2)
        if len(pos) + len(neg) > self.max_buckets:
            self._collapse()

    def _fold_stats(self, n: int, s: float, lo: float, hi: float, mean: float, m2: float) -> None:
        total = self.count + n
        d = mean - self._mean
        self._m2 += m2 + d * d * self.count * n / total
        self._mean += d * n / total
        self.count = total
        self.sum += s
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _collapse(self) -> None:
        # Merge the buckets closest to zero (lowest |x|): negatives with the largest keys are
        # the values nearest zero from below, so collapse positives' lowest keys first and then,
        # if negatives alone exceed the budget, their lowest keys (smallest magnitudes).
        excess = len(self.pos) + len(self.neg) - self.max_buckets
        for store in (self.pos, self.neg):
            if excess <= 0 or len(store) < 2:
                continue
            keys = sorted(store)
            take = min(excess, len(keys) - 1)
            target = keys[take]
            moved = sum(store.pop(k) for k in keys[:take])
            store[target] += moved
            excess -= take

    # --- merging and reading -----------------------------------------------------------------
    def merge(self, other: QuantileSketch) -> None:
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches with different relative accuracy")
        if other.count == 0:
            return
        for k, c in other.pos.items():
            self.pos[k] = self.pos.get(k, 0) + c
        for k, c in other.neg.items():
            self.neg[k] = self.neg.get(k, 0) + c
        self.zero_count += other.zero_count
        self._fold_stats(other.count, other.sum, other.min, other.max, other._mean, other._m2)
        if len(self.pos) + len(self.neg) > self.max_buckets:
            self._collapse()

    def _value(self, key: int) -> float:
        return 2.0 * self.gamma**key / (self.gamma + 1.0)

    def quantile(self, q: float) -> float:
        """Lower q-quantile (the value of rank floor(q·(n-1))), within α relative; NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return math.nan
        rank = math.floor(q * (self.count - 1))
        if rank == 0:
            return self.min
        if rank == self.count - 1:
            return self.max
        seen = 0
        for k in sorted(self.neg, reverse=True):  # most negative first
            seen += self.neg[k]
            if seen > rank:
                return max(-self._value(k), self.min)
        seen += self.zero_count
        if seen > rank:
            return 0.0
        for k in sorted(self.pos):
            seen += self.pos[k]
            if seen > rank:
                return min(self._value(k), self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self._mean if self.count else math.nan

    @property
    def variance(self) -> float:
        """Population variance (exact up to floating point)."""
        return self._m2 / self.count if self.count else math.nan

    @property
    def stddev(self) -> float:
        return math.sqrt(max(self.variance, 0.0)) if self.count else math.nan

    @property
    def sum_of_squares(self) -> float:
        return self._m2 + self.count * self._mean * self._mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "mean": self.mean if self.count else None,
            "stddev": self.stddev if self.count else None,
            "p50": self.quantile(0.5) if self.count else None,
            "p95": self.quantile(0.95) if self.count else None,
            "p99": self.quantile(0.99) if self.count else None,
        }

    # --- bytes (BLOB / bytea column) ------------------------------------------------------------
    @staticmethod
    def _pack_store(store: dict[int, int]) -> tuple[int, bytes]:
        """Dense counts from the lowest key: rollup buckets are contiguous, so this is compact."""
        if not store:
            return 0, b""
        lo, hi = min(store), max(store)
        counts = [store.get(k, 0) for k in range(lo, hi + 1)]
        return lo, struct.pack(f"<{len(counts)}Q", *counts)

    def to_bytes(self) -> bytes:
        plo, pbytes = self._pack_store(self.pos)
        nlo, nbytes = self._pack_store(self.neg)
        head = _HEADER.pack(
            _VERSION,
            self.alpha,
            self.max_buckets,
            self.min_value,
            self.count,
            self.sum,
            self.min,
            self.max,
            self._mean,
            self._m2,
            self.zero_count,
            plo,
            len(pbytes) // 8,
            nlo,
            len(nbytes) // 8,
        )
        return head + pbytes + nbytes

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        (
            version,
            alpha,
            max_buckets,
            min_value,
            count,
            total,
            lo,
            hi,
            mean,
            m2,
            zero,
            plo,
            plen,
            nlo,
            nlen,
        ) = _HEADER.unpack_from(data, 0)
        if version != _VERSION:
            raise ValueError(f"unsupported sketch version {version}")
        off = _HEADER.size
        sk = cls(alpha, max_buckets, min_value)
        pcounts = struct.unpack_from(f"<{plen}Q", data, off)
        off += 8 * plen
        ncounts = struct.unpack_from(f"<{nlen}Q", data, off)
        sk.pos = {plo + i: c for i, c in enumerate(pcounts) if c}
        sk.neg = {nlo + i: c for i, c in enumerate(ncounts) if c}
        sk.zero_count = zero
        sk.count, sk.sum, sk.min, sk.max, sk._mean, sk._m2 = count, total, lo, hi, mean, m2
        return sk
