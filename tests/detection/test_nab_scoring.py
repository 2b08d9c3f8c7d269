"""The NAB scorer on hand-built cases whose scores are computed by hand."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from nab_scoring import probation_rows, scaled_sigmoid, score_corpus

N = 100  # probation = 15 rows
WINDOW = (40, 59)  # 20 rows


def scores_with(detections):
    s = [0.0] * N
    for i in detections:
        s[i] = 1.0
    return s


def test_probation_and_sigmoid():
    assert probation_rows(100) == 15 and probation_rows(100_000) == 750
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(3.5) == -1.0


def test_perfect_detector_scores_100_and_null_scores_0():
    perfect = score_corpus([(scores_with([40]), [WINDOW])])["standard"]
    # the first row of a window is at position -1: reward 2*sigmoid(5)-1 = 0.98661 of the TP weight
    assert perfect.score == pytest.approx(100 * (1 + scaled_sigmoid(-1.0)) / 2)
    assert perfect.score > 99.3
    null = score_corpus([([0.0] * N, [WINDOW])])
    for result in null.values():
        assert result.score == 0.0 and result.fn == 1


def test_false_positive_lowers_score_by_its_weight():
    clean = score_corpus([(scores_with([40]), [WINDOW])])
    noisy = score_corpus([(scores_with([20, 40]), [WINDOW])])  # row 20: before any window -> -1 * FP
    for profile, fp_weight in (("standard", 0.11), ("reward_low_fp", 0.22)):
        raw_drop = clean[profile].raw - noisy[profile].raw
        assert raw_drop == pytest.approx(fp_weight)
        assert noisy[profile].fp == 1


def test_early_detection_earns_more_than_late():
    early = score_corpus([(scores_with([42]), [WINDOW])])["standard"]
    late = score_corpus([(scores_with([57]), [WINDOW])])["standard"]
    assert early.score > late.score > 0
    # by hand: position of row 57 is -(59-57+1)/20 = -0.15
    assert late.raw == pytest.approx(scaled_sigmoid(-0.15))


def test_only_first_detection_in_window_counts_and_fp_after_window_is_discounted():
    one = score_corpus([(scores_with([45]), [WINDOW])])["standard"]
    many = score_corpus([(scores_with([45, 46, 50]), [WINDOW])])["standard"]
    assert many.raw == pytest.approx(one.raw)
    after = score_corpus([(scores_with([45, 61]), [WINDOW])])["standard"]
    # row 61 is 2 rows past the window end: sigmoid continued at position 2/19
    assert one.raw - after.raw == pytest.approx(-0.11 * scaled_sigmoid(2 / 19))
    assert one.raw - after.raw < 0.11


def test_threshold_is_optimised_over_the_corpus():
    s = [0.0] * N
    s[45] = 0.6  # true detection
    s[20], s[80] = 0.9, 0.8  # confident false positives
    result = score_corpus([(s, [WINDOW])])["standard"]
    assert result.threshold == 0.6 and result.tp == 1 and result.fp == 2
    assert result.score > 0
