"""`artseg evaluate` with uncertainty: bootstrap intervals over images, scribble truth, the verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artseg.cli import main
from artseg.data import Dataset, DatasetError, read_scribbles
from artseg.evaluation import evaluate_predictions, format_per_image, format_table
from artseg.io import write_mask, write_png, write_prob
from artseg.metrics import bootstrap_intervals, pixel_scores
from tests.test_evaluation import H, W, copy_truth_as_prob, make_dataset, truth_of


def _records(rng, n):
    """Per-image counts of a fixed, uneven set: some images good, some poor."""
    out = []
    for _ in range(n):
        tp = int(rng.integers(0, 400))
        out.append({"tp": tp, "fp": int(rng.integers(0, 200)), "fn": int(rng.integers(0, 200)),
                    "object_tp": int(rng.integers(0, 4)), "object_fp": int(rng.integers(0, 3)),
                    "object_fn": int(rng.integers(0, 3))})
    return out


def _direct_bootstrap(records, keys, f1, n_resamples, seed, level=0.95):
    """The textbook percentile bootstrap, one resample at a time."""
    rng = np.random.default_rng(seed)
    counts = np.array([[r[k] for k in keys] for r in records])
    stats = []
    for _ in range(n_resamples):
        tp, fp, fn = counts[rng.integers(0, len(records), len(records))].sum(axis=0)
        stats.append(pixel_scores(tp, fp, fn)["f1" if f1 else "iou"])
    alpha = (1 - level) / 2
    return np.quantile(stats, [alpha, 1 - alpha])


def test_intervals_match_a_direct_bootstrap_on_a_fixed_set():
    records = _records(np.random.default_rng(3), 15)
    got = bootstrap_intervals(records, n_resamples=4000, seed=1)
    assert set(got) == {"pixel_iou", "pixel_f1", "object_iou"}
    for name, keys, f1 in (("pixel_iou", ("tp", "fp", "fn"), False), ("pixel_f1", ("tp", "fp", "fn"), True),
                           ("object_iou", ("object_tp", "object_fp", "object_fn"), False)):
        want = _direct_bootstrap(records, keys, f1, 4000, seed=7)  # another stream: Monte Carlo agreement
        assert got[name][1] - got[name][0] > 0.05  # a real spread, so the comparison means something
        assert got[name] == pytest.approx(want, abs=0.02), name
        total = pixel_scores(*(sum(r[k] for r in records) for k in keys))["f1" if f1 else "iou"]
        assert got[name][0] <= total <= got[name][1]
    assert bootstrap_intervals(records, n_resamples=500, seed=1) == bootstrap_intervals(records, n_resamples=500, seed=1)
    assert bootstrap_intervals(records[:1]) == {}  # one image: nothing to resample
    narrow = bootstrap_intervals(records, level=0.5, n_resamples=4000, seed=1)["pixel_iou"]
    assert got["pixel_iou"][0] < narrow[0] < narrow[1] < got["pixel_iou"][1]


def test_perfect_prediction_interval_is_one_one_and_verdict(tmp_path):
    ds = make_dataset(tmp_path / "data", np.random.default_rng(0), n_per_split=3)
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred, ("train", "val", "test"))
    res = evaluate_predictions(ds, pred, split="all", progress=False)
    assert res["n_images"] == 18 and res["split"] == "all"
    assert res["intervals"] == {"pixel_iou": [1.0, 1.0], "pixel_f1": [1.0, 1.0], "object_iou": [1.0, 1.0]}
    assert res["verdict"].startswith("on 18 images with dense masks: pixel IoU 1.00 [1.00, 1.00]")
    assert res["verdict"] in format_table(res)


def test_imperfect_prediction_interval_brackets_the_score(tmp_path):
    ds = make_dataset(tmp_path / "data", np.random.default_rng(1), n_per_split=4)
    pred = tmp_path / "pred"
    rng = np.random.default_rng(2)
    for s in ds.split("test"):
        noisy = truth_of(s) ^ (rng.random((H, W)) < 0.02)
        write_prob(pred / f"{s.stem}_prob.tif", noisy.astype(np.float32))
    res = evaluate_predictions(ds, pred, progress=False)
    for key in ("pixel_iou", "pixel_f1", "object_iou"):
        low, high = res["intervals"][key]
        assert 0 <= low <= res[key] <= high <= 1 and low < high
    per_image = [r["pixel_iou"] for r in res["per_image"]]
    assert len(per_image) == 8 and min(per_image) < 1
    table = format_per_image(res)
    assert all(s.stem in table for s in ds.split("test"))


def _scribble_dataset(tmp_path):
    ds = make_dataset(tmp_path / "data", np.random.default_rng(0))
    rng = np.random.default_rng(5)
    scribbles = {}
    for s in ds.split("test")[:3]:
        truth = truth_of(s)
        scrib = np.zeros((H, W), np.uint8)
        painted = rng.random((H, W)) < 0.3  # a random third of the pixels painted with their true class
        scrib[painted & truth] = 2
        scrib[painted & ~truth] = 1
        write_png(ds.root / "scribbles" / f"{s.stem}.png", scrib)
        scribbles[s.stem] = scrib
    return Dataset.load(ds.root), scribbles


def test_scribbles_count_only_painted_pixels(tmp_path):
    ds, scribbles = _scribble_dataset(tmp_path)
    pred = tmp_path / "pred"
    rng = np.random.default_rng(9)
    expected = np.zeros(3, dtype=np.int64)
    for s in ds.split("test"):
        guess = rng.random((H, W)) < 0.5
        write_mask(pred / f"{s.stem}_mask.png", guess)
        if s.stem in scribbles:
            scrib = scribbles[s.stem]
            expected += [np.sum(guess & (scrib == 2)), np.sum(guess & (scrib == 1)), np.sum(~guess & (scrib == 2))]
    res = evaluate_predictions(ds, pred, truth="scribbles", progress=False)
    assert res["n_images"] == 3 and res["object_iou"] is None and "object_iou" not in res["intervals"]
    assert [sum(r[k] for r in res["per_image"]) for k in ("tp", "fp", "fn")] == expected.tolist()
    assert res["pixel_iou"] == pytest.approx(pixel_scores(*expected)["iou"])
    assert res["verdict"].startswith("on 3 test scribbled images: pixel IoU")
    assert "object IoU" not in res["verdict"]
    # The truth copied as prediction is perfect on every painted pixel, whatever it does elsewhere.
    for s in ds.split("test"):
        write_mask(pred / f"{s.stem}_mask.png", truth_of(s))
    assert evaluate_predictions(ds, pred, truth="scribbles", progress=False)["intervals"]["pixel_iou"] == [1.0, 1.0]


def test_bad_scribbles_and_no_scribbles(tmp_path):
    ds = make_dataset(tmp_path / "data", np.random.default_rng(0))
    with pytest.raises(DatasetError, match="scribbles: no scribbles for the images of split 'test'"):
        evaluate_predictions(ds, tmp_path, truth="scribbles", progress=False)
    bad = ds.root / "scribbles" / "x.png"
    write_png(bad, np.full((H, W), 3, np.uint8))
    with pytest.raises(DatasetError, match=r"x.png: scribble value 3 \(use 0 unknown, 1 clean, 2 artefact\)"):
        read_scribbles(bad)
    stem = ds.split("test")[0].stem
    write_png(ds.root / "scribbles" / f"{stem}.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(DatasetError, match=f"{stem}.png: scribble size 34x24 differs from image size 32x24"):
        Dataset.load(ds.root)


def _evaluate(capsys, *args) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_intervals_per_image_and_verdict(tmp_path, capsys):
    ds, _ = _scribble_dataset(tmp_path)
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred, ("train", "val", "test"))
    code, out, err = _evaluate(capsys, "--data", ds.root, "--pred", pred, "--split", "all", "--per-image", "--quiet",
                               "--json", tmp_path / "e.json")
    assert code == 0, err
    assert "on 12 images with dense masks: pixel IoU 1.00 [1.00, 1.00]" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("train_", "val_", "test_"))]
    assert len(rows) == 12 and all(row[2:5] == ["1.000"] * 3 for row in rows)  # one per-image row each
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["intervals"]["object_iou"] == [1.0, 1.0] and saved["bootstrap"]["n_resamples"] == 2000
    code, out, err = _evaluate(capsys, "--data", ds.root, "--pred", pred, "--truth", "scribbles", "--quiet")
    assert code == 0, err
    assert "on 3 test scribbled images: pixel IoU 1.00 [1.00, 1.00], pixel F1 1.00 [1.00, 1.00]" in out
    code, out, err = _evaluate(capsys, "--data", ds.root, "--pred", pred, "--resamples", "0")
    assert code == 2 and err.count("\n") == 1 and "--resamples" in err
