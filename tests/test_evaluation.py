"""`evaluate_predictions` on tiny hand-built datasets, and the overlays."""

from __future__ import annotations

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import label as sk_label

from artseg.data import Dataset, DatasetError
from artseg.evaluation import (
    SUMMARY_KEYS,
    EvaluationError,
    evaluate_predictions,
    format_table,
    write_json,
)
from artseg.io import read_mask, write_mask, write_prob
from artseg.overlays import (
    FN_COLOUR,
    FP_COLOUR,
    PRED_COLOUR,
    TP_COLOUR,
    annotated,
    outlined,
    overlay,
    write_overlay,
)

H, W = 24, 32


def make_dataset(root, rng, n_per_split=2, mask_clean=True):
    """images/*.tif (uint16), masks/*.png, labels.csv with a split column."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["filename,label,split"]
    for split in ("train", "val", "test"):
        for i in range(n_per_split):
            for label in ("clean", "artefact"):
                stem = f"{split}_{label}_{i}"
                tifffile.imwrite(root / "images" / f"{stem}.tif", rng.integers(1000, 3000, (H, W), dtype=np.uint16))
                mask = np.zeros((H, W), bool)
                if label == "artefact":
                    y, x = rng.integers(2, H - 8), rng.integers(2, W - 8)
                    mask[y : y + rng.integers(3, 7), x : x + rng.integers(3, 7)] = True
                    mask[rng.integers(0, H), rng.integers(0, W)] = True  # a one-pixel speck
                if label == "artefact" or mask_clean:
                    write_mask(root / "masks" / f"{stem}.png", mask)
                rows.append(f"{stem}.tif,{label},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return Dataset.load(root)


def truth_of(sample):
    return read_mask(sample.mask_path) if sample.mask_path else np.zeros((H, W), bool)


def copy_truth_as_prob(ds, pred_dir, splits=("test",)):
    for split in splits:
        for s in ds.split(split):
            write_prob(pred_dir / f"{s.stem}_prob.tif", truth_of(s).astype(np.float32))


@pytest.fixture
def ds(tmp_path):
    return make_dataset(tmp_path / "data", np.random.default_rng(0))


def test_truth_copied_as_predictions_scores_one(ds, tmp_path):
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred, ("val", "test"))
    for kwargs in ({}, {"threshold": 0.9}, {"optimise_on": "val"}):
        res = evaluate_predictions(ds, pred, split="test", progress=False, **kwargs)
        assert set(SUMMARY_KEYS) | {"split", "truth", "postprocess", "per_image", "intervals", "bootstrap", "verdict"} == set(res)
        assert res["intervals"] == {k: [1.0, 1.0] for k in ("pixel_iou", "pixel_f1", "object_iou")}
        assert [res[k] for k in SUMMARY_KEYS if k not in ("threshold", "n_images")] == [1.0] * 5
        assert res["n_images"] == 4 and res["split"] == "test"
        assert {r["stem"] for r in res["per_image"]} == {s.stem for s in ds.split("test")}
        assert all(r["pixel_iou"] == 1.0 and r["object_iou"] == 1.0 for r in res["per_image"])
    assert evaluate_predictions(ds, pred, progress=False)["threshold"] == 0.5
    assert evaluate_predictions(ds, pred, threshold=0.9, progress=False)["threshold"] == 0.9
    # Binary maps: the perfect plateau is (0, 1], the search picks its middle.
    assert evaluate_predictions(ds, pred, optimise_on="val", progress=False)["threshold"] == 0.5


def test_masks_only_are_scored_as_they_are(ds, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for s in ds.split("test"):
        shutil.copy(s.mask_path, pred / f"{s.stem}_mask.png")
    res = evaluate_predictions(str(ds.root), pred, progress=False)  # a path works as well
    assert res["threshold"] is None and res["pixel_iou"] == 1.0 and res["object_iou"] == 1.0


def test_missing_prediction_names_the_file(ds, tmp_path):
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred)
    victim = ds.split("test")[1]
    (pred / f"{victim.stem}_prob.tif").unlink()
    with pytest.raises(EvaluationError, match=f"{victim.stem}_prob.tif: missing prediction") as info:
        evaluate_predictions(ds, pred, progress=False)
    assert "\n" not in str(info.value)
    # Optimising on a split whose maps are absent names the missing map too.
    with pytest.raises(EvaluationError, match="val_clean_0_prob.tif: missing probability map"):
        evaluate_predictions(ds, pred, optimise_on="val", progress=False)


def test_bad_predictions_and_truth(ds, tmp_path):
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred)
    s = ds.split("test")[0]
    write_prob(pred / f"{s.stem}_prob.tif", np.zeros((H, W + 1), np.float32))
    with pytest.raises(EvaluationError, match=f"{s.stem}_prob.tif: prediction size 33x24 differs"):
        evaluate_predictions(ds, pred, progress=False)
    tifffile.imwrite(pred / f"{s.stem}_prob.tif", np.zeros((H, W), np.uint8))
    with pytest.raises(EvaluationError, match="must be float"):
        evaluate_predictions(ds, pred, progress=False)
    copy_truth_as_prob(ds, pred)
    art = next(x for x in ds.split("test") if x.is_artefact)
    art.mask_path.unlink()
    with pytest.raises(DatasetError, match=f"{art.stem}.tif: artefact image has no mask"):
        evaluate_predictions(Dataset.load(ds.root), pred, progress=False)
    with pytest.raises(ValueError, match="not both"):
        evaluate_predictions(ds, pred, threshold=0.5, optimise_on="val", progress=False)


def test_clean_image_without_mask_has_empty_truth(tmp_path):
    ds = make_dataset(tmp_path / "data", np.random.default_rng(1), mask_clean=False)
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred)
    res = evaluate_predictions(ds, pred, progress=False)
    assert res["pixel_iou"] == 1.0
    clean = next(s for s in ds.split("test") if not s.is_artefact)
    write_prob(pred / f"{clean.stem}_prob.tif", np.ones((H, W), np.float32))  # all false positives
    rec = next(r for r in evaluate_predictions(ds, pred, progress=False)["per_image"] if r["stem"] == clean.stem)
    assert (rec["tp"], rec["fp"], rec["fn"], rec["pixel_precision"], rec["pixel_recall"]) == (0, H * W, 0, 0.0, 1.0)


def _ref_div(a, b):
    return 1.0 if b == 0 else a / b


def test_random_maps_match_independent_implementation(ds, tmp_path):
    """The issue's acceptance check: JSON on random maps equals a from-scratch computation."""
    rng = np.random.default_rng(7)
    pred = tmp_path / "pred"
    for s in ds.split("test"):
        p = ndimage.gaussian_filter(rng.random((H, W)), 1.5)
        write_prob(pred / f"{s.stem}_prob.tif", (p - p.min()) / (p.max() - p.min()))
    t = 0.55
    res = evaluate_predictions(ds, pred, threshold=t, progress=False)
    write_json(res, tmp_path / "out" / "eval.json")
    loaded = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert loaded == res and not list((tmp_path / "out").glob("*.part"))
    ptp = pfp = pfn = otp = ofp = ofn = 0
    for s in ds.split("test"):
        p = tifffile.imread(pred / f"{s.stem}_prob.tif") >= t
        g = truth_of(s)
        ptp += int(np.sum(p & g))
        pfp += int(np.sum(p & ~g))
        pfn += int(np.sum(~p & g))
        lt, lp = sk_label(g, connectivity=2), sk_label(p, connectivity=2)
        hits = [(i, j) for i in range(1, lt.max() + 1) for j in range(1, lp.max() + 1)
                if np.sum((lt == i) & (lp == j)) / np.sum((lt == i) | (lp == j)) > 0.5]
        otp += len({i for i, _ in hits})
        ofn += lt.max() - len({i for i, _ in hits})
        ofp += lp.max() - len({j for _, j in hits})
    ref = {
        "pixel_precision": _ref_div(ptp, ptp + pfp),
        "pixel_recall": _ref_div(ptp, ptp + pfn),
        "pixel_f1": _ref_div(2 * ptp, 2 * ptp + pfp + pfn),
        "pixel_iou": _ref_div(ptp, ptp + pfp + pfn),
        "object_iou": _ref_div(otp, otp + ofp + ofn),
    }
    assert ofp > 0  # random maps do produce spurious objects
    for key, value in ref.items():
        assert abs(loaded[key] - value) <= 1e-9, key
    table = format_table(res)
    assert "pixel IoU" in table and f"{res['pixel_iou']:.4f}" in table


def test_overlay_colours():
    image = np.full((2, 3), 0.5, np.float32)
    pred = np.array([[1, 1, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 1], [0, 0, 0]], bool)
    out = overlay(image, pred, truth, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert tuple(out[0, 0]) == TP_COLOUR == (0, 255, 0)
    assert tuple(out[0, 1]) == FP_COLOUR == (255, 0, 0)
    assert tuple(out[0, 2]) == FN_COLOUR == (0, 0, 255)
    assert tuple(out[1, 0]) == (128, 128, 128)  # untouched gray (0.5 * 255 rounded)
    half = overlay(image, pred, truth, alpha=0.5)
    assert tuple(half[0, 1]) == (192, 64, 64)  # round(0.5 * 128 + 0.5 * 255), round(0.5 * 128)
    assert tuple(overlay(image, pred, alpha=1.0)[0, 0]) == PRED_COLOUR
    assert tuple(overlay(np.full((2, 3), 7, np.uint8), pred, truth)[1, 2]) == (7, 7, 7)
    with pytest.raises(ValueError, match="shape"):
        overlay(image, pred[:, :2], truth)


def test_evaluate_writes_overlays(ds, tmp_path):
    pred = tmp_path / "pred"
    copy_truth_as_prob(ds, pred)
    art = next(s for s in ds.split("test") if s.is_artefact)
    truth = truth_of(art)
    fp_at = tuple(np.argwhere(~truth)[0])
    tp_at, fn_at = (tuple(a) for a in np.argwhere(truth)[:2])
    p = truth.astype(np.float32)
    p[fp_at], p[fn_at] = 1.0, 0.0
    write_prob(pred / f"{art.stem}_prob.tif", p)
    ov = tmp_path / "ov"
    evaluate_predictions(ds, pred, overlays_dir=ov, progress=False)
    assert sorted(f.name for f in ov.iterdir()) == sorted(f"{s.stem}_overlay.png" for s in ds.split("test"))
    figure = iio.imread(ov / f"{art.stem}_overlay.png")
    # The figure is a header band (title with the image's numbers, legend) above the outlined overlay.
    header = figure.shape[0] - H
    assert header > 0 and figure.shape[1] >= W and figure.dtype == np.uint8
    assert (figure[:header] < 128).any()  # the title and legend are drawn
    assert np.array_equal(figure, annotated(art.read_image(), p >= 0.5, truth, title=_title_of(figure, art, p, truth)))
    rgb = figure[header:, :W]
    assert np.array_equal(rgb, outlined(art.read_image(), p >= 0.5, truth))
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    assert g[tp_at] > r[tp_at] and g[tp_at] > b[tp_at]
    assert r[fp_at] > g[fp_at] and r[fp_at] > b[fp_at]
    assert b[fn_at] > r[fn_at] and b[fn_at] > g[fn_at]
    rest = ~(truth | (p >= 0.5))
    assert np.array_equal(r[rest], g[rest]) and np.array_equal(g[rest], b[rest])


def _title_of(figure, sample, prob, truth):
    """The title evaluate writes for one image (its numbers recomputed here from the same pixels)."""
    from artseg.metrics import SplitMetrics

    rec = SplitMetrics().add(prob >= 0.5, truth)
    return (f"{sample.stem} ({sample.label}): pixel IoU {rec['pixel_iou']:.2f}, object IoU {rec['object_iou']:.2f}, "
            f"FP {rec['fp']} px, FN {rec['fn']} px")


def test_write_overlay_is_atomic_png(tmp_path):
    write_overlay(tmp_path / "a" / "x_overlay.png", np.zeros((4, 4)), np.eye(4, dtype=bool), np.eye(4, dtype=bool))
    assert [f.name for f in (tmp_path / "a").iterdir()] == ["x_overlay.png"]
    rgb = iio.imread(tmp_path / "a" / "x_overlay.png")
    assert np.array_equal(rgb, overlay(np.zeros((4, 4)), np.eye(4, dtype=bool), np.eye(4, dtype=bool)))


def test_failed_overlay_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    """Atomic on failure too: an encoder that dies half-way (bytes already on disk) leaves the overlay
    written before intact, and no temporary beside it."""
    target = tmp_path / "a" / "x_overlay.png"
    write_overlay(target, np.zeros((4, 4)), np.eye(4, dtype=bool))
    before = target.read_bytes()

    def dies_half_way(uri, image, **kwargs):
        with open(uri, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n half an image")
        raise OSError(28, "No space left on device", str(uri))

    monkeypatch.setattr(iio, "imwrite", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        write_overlay(target, np.ones((4, 4)), ~np.eye(4, dtype=bool))
    assert target.read_bytes() == before and [f.name for f in target.parent.iterdir()] == ["x_overlay.png"]
