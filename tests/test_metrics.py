"""Metrics: hand-computed cases, property tests and an independent re-implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from skimage.measure import label as sk_label

from artseg.metrics import (
    SplitMetrics,
    ThresholdSearch,
    confusion,
    object_counts,
    object_iou,
    pixel_scores,
    score_split,
)
from artseg.thresholds import iou_optimal, prior_shift_threshold

A = np.array


# ---------------------------------------------------------------- independent reference
def ref_pixel(pred, truth):
    """Pixel counts by an explicit loop over pixels."""
    tp = fp = fn = 0
    for p, t in zip(np.asarray(pred, bool).ravel().tolist(), np.asarray(truth, bool).ravel().tolist()):
        tp += p and t
        fp += p and not t
        fn += t and not p
    return tp, fp, fn


def ref_objects(pred, truth):
    """Object counts with per-object masks and a double loop (scikit-image labelling)."""
    lt = sk_label(np.asarray(truth, bool), connectivity=2)
    lp = sk_label(np.asarray(pred, bool), connectivity=2)
    matched_pred = set()
    tp = fn = 0
    for i in range(1, lt.max() + 1):
        ti = lt == i
        hit = False
        for j in range(1, lp.max() + 1):
            pj = lp == j
            iou = np.logical_and(ti, pj).sum() / np.logical_or(ti, pj).sum()
            if iou > 0.5:
                hit = True
                matched_pred.add(j)
        tp += hit
        fn += not hit
    return tp, lp.max() - len(matched_pred), fn


def ref_div(a, b):
    return 1.0 if b == 0 else a / b


def ref_split(pairs):
    ptp = pfp = pfn = otp = ofp = ofn = 0
    for pred, truth in pairs:
        a, b, c = ref_pixel(pred, truth)
        ptp, pfp, pfn = ptp + a, pfp + b, pfn + c
        a, b, c = ref_objects(pred, truth)
        otp, ofp, ofn = otp + a, ofp + b, ofn + c
    return {
        "pixel_precision": ref_div(ptp, ptp + pfp),
        "pixel_recall": ref_div(ptp, ptp + pfn),
        "pixel_f1": ref_div(2 * ptp, 2 * ptp + pfp + pfn),
        "pixel_iou": ref_div(ptp, ptp + pfp + pfn),
        "object_iou": ref_div(otp, otp + ofp + ofn),
    }


def random_maps(rng, n=4, shape=(40, 56)):
    """Blobby random probability maps and truths: the truth is a level set of a smooth latent
    field, the map a noisy version of it, so the IoU curve has an interior optimum."""
    out = []
    for _ in range(n):
        def smooth():
            f = ndimage.gaussian_filter(rng.random(shape), 2.0)
            return (f - f.min()) / (f.max() - f.min())

        latent = smooth()
        truth = latent > 0.65
        prob = np.clip(latent + 0.3 * (smooth() - 0.5), 0, 1).astype(np.float32)
        out.append((prob, truth))
    return out


# ---------------------------------------------------------------- hand-computed cases
def test_confusion_and_scores_hand_computed():
    pred = A([[1, 1, 0], [0, 1, 0]], bool)
    truth = A([[1, 0, 0], [0, 1, 1]], bool)
    assert confusion(pred, truth) == (2, 1, 1)
    s = pixel_scores(2, 1, 1)
    assert s == {"precision": 2 / 3, "recall": 2 / 3, "f1": 4 / 6, "iou": 2 / 4}


def test_confusion_returns_python_ints_and_checks_shape():
    tp, fp, fn = confusion(np.ones((3, 3)), np.zeros((3, 3)))
    assert (tp, fp, fn) == (0, 9, 0) and all(type(v) is int for v in (tp, fp, fn))
    with pytest.raises(ValueError, match="shape"):
        confusion(np.ones((3, 3)), np.ones((3, 4)))


def test_zero_over_zero_is_one():
    assert pixel_scores(0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0}
    # Nothing to find but false alarms: recall is 0/0 = 1, the rest are 0.
    assert pixel_scores(0, 3, 0) == {"precision": 0.0, "recall": 1.0, "f1": 0.0, "iou": 0.0}
    # Nothing predicted, artefacts missed: precision is 0/0 = 1.
    assert pixel_scores(0, 0, 2) == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}
    assert object_iou(0, 0, 0) == 1.0
    assert object_counts(np.zeros((4, 4)), np.zeros((4, 4))) == (0, 0, 0)


def test_no_overflow_on_huge_counts():
    big = 2**40
    assert pixel_scores(big, big, 0)["precision"] == 0.5
    assert pixel_scores(big, 0, 0)["f1"] == 1.0


def test_diagonal_touch_is_one_object_and_iou_half_is_not_a_match():
    truth = A([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)  # one 8-connected object of 2 pixels
    pred = A([[1, 0, 0], [0, 0, 0], [0, 0, 0]], bool)  # covers half of it: IoU exactly 0.5
    assert object_counts(pred, truth) == (0, 1, 1)
    assert object_counts(truth, truth) == (1, 0, 0)
    # 3 of 4 pixels of a diagonal chain: IoU 0.75 > 0.5, a match.
    chain = np.eye(4, dtype=bool)
    part = chain.copy()
    part[3, 3] = False
    assert object_counts(part, chain) == (1, 0, 0)


def test_truth_object_split_by_prediction():
    truth = A([[1, 1, 1, 1]], bool)
    # Two predicted pieces, IoU 1/4 and 2/4: neither exceeds 0.5.
    assert object_counts(A([[1, 0, 1, 1]], bool), truth) == (0, 2, 1)
    truth5 = A([[1, 1, 1, 1, 1]], bool)
    # Pieces with IoU 1/5 and 3/5: the big piece matches, the small one is a false positive.
    assert object_counts(A([[1, 0, 1, 1, 1]], bool), truth5) == (1, 1, 0)


def test_prediction_merging_two_truth_objects():
    truth = A([[1, 0, 1, 1, 1, 1]], bool)
    pred = A([[1, 1, 1, 1, 1, 1]], bool)  # one object: IoU 1/6 and 4/6 with the truth objects
    assert object_counts(pred, truth) == (1, 0, 1)
    assert object_iou(1, 0, 1) == 0.5


def test_split_level_sums_counts_not_means():
    perfect = (A([[1, 1]], bool), A([[1, 1]], bool))
    bad = (A([[1, 0, 0, 0]], bool), A([[0, 1, 1, 1]], bool))
    res = score_split([perfect, bad])
    assert res["n_images"] == 2
    assert res["pixel_iou"] == 2 / 6  # (2 TP) / (2 TP + 1 FP + 3 FN), not mean(1, 0)
    assert [r["pixel_iou"] for r in res["per_image"]] == [1.0, 0.0]
    assert res["object_iou"] == 1 / 3  # 1 TP, 1 FP, 1 FN


# ---------------------------------------------------------------- property tests
masks = st.integers(1, 12).flatmap(
    lambda h: st.integers(1, 12).flatmap(
        lambda w: st.tuples(arrays(bool, (h, w)), arrays(bool, (h, w)))
    )
)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_properties_of_pixel_and_object_scores(pair):
    pred, truth = pair
    tp, fp, fn = confusion(pred, truth)
    s = pixel_scores(tp, fp, fn)
    assert all(0.0 <= v <= 1.0 for v in s.values())
    assert s["iou"] <= s["f1"] + 1e-15
    assert min(s["precision"], s["recall"]) - 1e-12 <= s["f1"] <= max(s["precision"], s["recall"]) + 1e-12
    # Swapping prediction and truth swaps FP/FN, precision/recall; F1 and IoU stay.
    assert confusion(truth, pred) == (tp, fn, fp)
    t = pixel_scores(*confusion(truth, pred))
    assert (t["precision"], t["recall"], t["f1"], t["iou"]) == (s["recall"], s["precision"], s["f1"], s["iou"])
    otp, ofp, ofn = object_counts(pred, truth)
    assert object_counts(truth, pred) == (otp, ofn, ofp)
    assert 0.0 <= object_iou(otp, ofp, ofn) <= 1.0
    assert (tp, fp, fn) == ref_pixel(pred, truth)
    assert (otp, ofp, ofn) == ref_objects(pred, truth)
    if np.array_equal(pred, truth):
        assert s["iou"] == 1.0 and object_iou(otp, ofp, ofn) == 1.0


def brute_force_ious(pairs, thresholds):
    """Re-threshold every map at every candidate: the slow definition."""
    out = []
    for t in thresholds:
        tp = fp = fn = 0
        for prob, truth in pairs:
            a, b, c = confusion(prob >= t, truth)
            tp, fp, fn = tp + a, fp + b, fn + c
        out.append(ref_div(tp, tp + fp + fn))
    return np.array(out)


@st.composite
def prob_maps(draw):
    """Probabilities that sit exactly on, just below and just above grid edges."""
    n_bins = draw(st.sampled_from([3, 7, 10, 100, 256, 1000]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_img = draw(st.integers(1, 3))
    pairs = []
    for _ in range(n_img):
        h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        ks = draw(arrays(np.int64, (h, w), elements=st.integers(0, n_bins)))
        nudge = draw(arrays(np.int64, (h, w), elements=st.integers(-1, 1)))
        base = (ks / n_bins).astype(dtype)
        prob = np.where(nudge < 0, np.nextafter(base, dtype(-1)), np.where(nudge > 0, np.nextafter(base, dtype(2)), base))
        prob = np.clip(prob, 0, 1).astype(dtype)
        pairs.append((prob, draw(arrays(bool, (h, w)))))
    return n_bins, pairs


@settings(max_examples=150, deadline=None)
@given(prob_maps())
def test_threshold_search_equals_brute_force_on_grid(case):
    n_bins, pairs = case
    search = ThresholdSearch(n_bins)
    for prob, truth in pairs:
        search.add(prob, truth)
    assert np.array_equal(search.ious(), brute_force_ious(pairs, search.thresholds))
    t, iou = search.best()
    assert iou == brute_force_ious(pairs, [t])[0] == search.ious().max()
    # A float32 map gives the same pixels whether it is compared in float32 or float64.
    for prob, _ in pairs:
        if prob.dtype == np.float32:
            assert np.array_equal(prob >= np.float32(t), prob.astype(np.float64) >= t)


def test_threshold_search_on_random_maps_matches_reference():
    pairs = random_maps(np.random.default_rng(0), n=3)
    search = ThresholdSearch(256)
    for prob, truth in pairs:
        search.add(prob, truth)
    t, iou = search.best()
    brute = brute_force_ious(pairs, search.thresholds)
    assert iou == brute.max()
    assert ref_split([(p >= t, m) for p, m in pairs])["pixel_iou"] == pytest.approx(iou, abs=1e-12)
    assert 0.0 < t < 1.0 and iou < 1.0  # a real optimum, not a trivial corner
    assert iou_optimal(pairs, n_bins=256) == (t, iou)


def test_threshold_search_plateau_and_errors():
    truth = A([[1, 0], [0, 1]], bool)
    search = ThresholdSearch(1024)
    search.add(truth.astype(np.float32), truth)
    assert search.best() == (0.5, 1.0)  # middle of the perfect plateau (0, 1]
    with pytest.raises(ValueError, match="before any"):
        ThresholdSearch().best()
    with pytest.raises(ValueError, match="NaN"):
        ThresholdSearch().add(np.full((2, 2), np.nan), truth)
    with pytest.raises(ValueError, match="shape"):
        ThresholdSearch().add(np.zeros((2, 3)), truth)


def test_against_independent_implementation_on_random_maps():
    rng = np.random.default_rng(1)
    pairs = random_maps(rng, n=5)
    for t in (0.2, 0.5, float(rng.random())):
        acc = SplitMetrics()
        binary = [(p >= t, m) for p, m in pairs]
        for i, (pred, truth) in enumerate(binary):
            rec = acc.add(pred, truth, stem=f"img{i}", label="artefact")
            ref = ref_split([(pred, truth)])
            for key, value in ref.items():
                assert rec[key] == pytest.approx(value, abs=1e-9), key
        res = acc.result()
        ref = ref_split(binary)
        assert res["n_images"] == 5
        for key, value in ref.items():
            assert res[key] == pytest.approx(value, abs=1e-9), key
        assert res["object_iou"] != 1.0  # the random case does exercise the object matching


def test_split_pixel_scores_sum_counts_over_images():
    from artseg.metrics import score_split, split_pixel_scores

    rng = np.random.default_rng(3)
    probs = [rng.random((8, 9)).astype(np.float32) for _ in range(3)]
    truths = [rng.random((8, 9)) > 0.7 for _ in range(3)]
    pooled = score_split((p >= 0.6, t) for p, t in zip(probs, truths))
    assert split_pixel_scores(probs, truths, 0.6)["iou"] == pytest.approx(pooled["pixel_iou"])


def _posteriors(truth_fraction: float, trained_fraction: float, n: int, rng) -> np.ndarray:
    """Exact posteriors, at `trained_fraction`, of unit Gaussian scores (artefact mean 2, clean 0) drawn at `truth_fraction`."""
    truth = rng.random(n) < truth_fraction
    score = rng.normal(np.where(truth, 2.0, 0.0), 1.0)
    odds = np.exp(2.0 * score - 2.0) * trained_fraction / (1 - trained_fraction)
    return (odds / (1 + odds)).reshape(-1, 500)


def test_prior_shift_threshold_recovers_the_images_fraction_and_the_bayes_threshold():
    rng = np.random.default_rng(0)
    # trained where 30 % were artefact (painted pixels), applied to images with 4 % artefact
    maps = [_posteriors(0.04, 0.3, 100_000, rng) for _ in range(2)]
    threshold, fraction = prior_shift_threshold(maps, 0.3)
    assert fraction == pytest.approx(0.04, abs=0.004)
    ratio = 0.96 / 0.04 * 0.3 / 0.7  # posterior 0.5 at the images' prior: these odds at the trained one
    assert threshold == pytest.approx(ratio / (1 + ratio), abs=0.01)  # 0.91, far above 0.5
    # no shift: the threshold stays at 0.5
    same, fraction = prior_shift_threshold([_posteriors(0.2, 0.2, 200_000, rng)], 0.2)
    assert fraction == pytest.approx(0.2, abs=0.01) and same == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="trained_fraction"):
        prior_shift_threshold(maps, 1.0)
