"""Mask post-processing (artseg.postprocess): small objects removed, holes filled, saved with a model,
applied by predict_mask, the API, `artseg predict` and `artseg evaluate`; the sweep of benchmarks/objects.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from conftest import save_tiny_unet
from plate_helpers import make_plate

import artseg
from artseg import layout
from artseg.cli import main
from artseg.data import Dataset
from artseg.evaluation import POSTPROCESS_GRID, evaluate_predictions, format_table, sweep_postprocess
from artseg.io import read_mask, write_mask, write_prob
from artseg.methods import load_method
from artseg.metrics import SplitMetrics, label_components
from artseg.postprocess import PostProcess, PostProcessError, clean_mask

FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"


def blobs() -> np.ndarray:
    """Components of 1, 3 (diagonal), 4 and 5 px, and a 7x7 square with a 1 px and a 3x3 hole."""
    m = np.zeros((20, 30), dtype=bool)
    m[1, 1] = True  # 1 px
    m[1, 5] = m[2, 6] = m[3, 7] = True  # a diagonal line: ONE 8-connected object of 3 px
    m[6:8, 1:3] = True  # 4 px
    m[10, 1:6] = True  # 5 px
    m[5:18, 12:27] = True  # 13 x 15 = 195 px ...
    m[7, 14] = False  # ... with a 1 px hole
    m[10:13, 18:21] = False  # ... and a 3x3 hole
    return m


def sizes(mask: np.ndarray) -> list[int]:
    labels, n = label_components(mask)
    return sorted(np.bincount(labels.ravel(), minlength=n + 1)[1:].tolist())


def test_objects_below_the_size_go_those_at_it_stay():
    m = blobs()
    assert sizes(m) == [1, 3, 4, 5, 195 - 10]
    assert sizes(clean_mask(m, min_object_px=4)) == [4, 5, 185]  # 4 is kept, 3 is not
    assert sizes(clean_mask(m, min_object_px=5)) == [5, 185]
    assert sizes(clean_mask(m, min_object_px=186)) == []
    for off in (0, 1):
        assert np.array_equal(clean_mask(m, min_object_px=off), m)
    assert clean_mask(m, 4).dtype == bool and clean_mask(m, 4).shape == m.shape


def test_a_diagonal_pair_is_one_object():
    m = np.zeros((5, 5), dtype=bool)
    m[1, 1] = m[2, 2] = True  # 8-connected: one object of 2 px
    assert np.array_equal(clean_mask(m, min_object_px=2), m)
    assert not clean_mask(m, min_object_px=3).any()
    assert label_components(clean_mask(m, 2))[1] == 1


def test_holes_are_filled_optionally_only_small_ones():
    m = blobs()
    filled = clean_mask(m, fill_holes=True)
    assert filled[7, 14] and filled[10:13, 18:21].all() and sizes(filled) == [1, 3, 4, 5, 195]
    assert np.array_equal(filled & ~m, np.logical_xor(filled, m))  # only adds pixels
    small = clean_mask(m, fill_holes=True, max_hole_px=1)
    assert small[7, 14] and not small[10:13, 18:21].any()
    assert clean_mask(m, fill_holes=True, max_hole_px=9)[10:13, 18:21].all()
    both = clean_mask(m, min_object_px=5, fill_holes=True)
    assert sizes(both) == [5, 195]


def test_a_pocket_open_to_the_border_is_not_a_hole():
    m = np.zeros((8, 8), dtype=bool)
    m[0:5, 2] = m[0:5, 5] = True
    m[4, 2:6] = True  # a U open to the top edge: the inside reaches the border
    assert np.array_equal(clean_mask(m, fill_holes=True), m)
    # a diagonal gap in a ring does not open it: 8-connected objects enclose 4-connected holes
    ring = np.zeros((7, 7), dtype=bool)
    ring[1, 2:5] = ring[5, 2:5] = ring[2:5, 1] = ring[2:5, 5] = True  # corners missing, diagonal links only
    assert label_components(ring)[1] == 1
    assert clean_mask(ring, fill_holes=True)[2:5, 2:5].all()


def test_clean_mask_is_idempotent_and_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((40, 50)) > 0.55
        before = m.copy()
        once = clean_mask(m, min_object_px=6, fill_holes=True, max_hole_px=4)
        assert np.array_equal(m, before)
        assert np.array_equal(clean_mask(once, min_object_px=6, fill_holes=True, max_hole_px=4), once)
        assert min(sizes(once), default=6) >= 6


def test_bad_settings_are_refused():
    m = blobs()
    for kwargs in ({"min_object_px": -1}, {"max_hole_px": 4}, {"fill_holes": True, "max_hole_px": 0},
                   {"min_object_px": 2.5}):
        with pytest.raises(PostProcessError):
            clean_mask(m, **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        clean_mask(np.zeros((2, 3, 4), bool), 2)
    with pytest.raises(PostProcessError, match="unknown"):
        PostProcess.from_dict({"min_object_px": 3, "smooth": True})
    assert PostProcess.from_dict(None) == PostProcess() and PostProcess().is_off
    assert PostProcess(32, True).describe() == "objects >= 32 px, holes filled"
    # turning filling off drops the hole limit; a limit without filling is an error
    assert PostProcess(8, True, 50).replace(fill_holes=False) == PostProcess(8, False, None)
    assert PostProcess(8, True, 50).replace(min_object_px=0) == PostProcess(0, True, 50)


def test_objects_whose_map_never_reaches_the_peak_go_whole():
    """Hysteresis: the mask is cut at 0.3; an object stays, whole (its 0.4 rim too), when one pixel reaches 0.9."""
    prob = np.zeros((20, 30), np.float32)
    prob[2:8, 2:8] = 0.4
    prob[4, 4] = 0.95  # a sure pixel inside the first object
    prob[12:16, 12:16] = 0.6  # unsure throughout
    prob[2:4, 20:22] = 0.9  # small and sure
    mask = prob >= 0.3
    kept = clean_mask(mask, prob=prob, min_peak=0.9)
    assert sizes(kept) == [4, 36] and kept[2:8, 2:8].all() and not kept[12:16, 12:16].any()
    assert sizes(clean_mask(mask, min_object_px=5, prob=prob, min_peak=0.9)) == [36]  # both rules
    assert np.array_equal(clean_mask(mask, prob=prob, min_peak=0.0), mask)
    setting = PostProcess(min_peak=0.9)
    assert not setting.is_off and setting.describe() == "objects reaching p >= 0.9"
    assert np.array_equal(setting.apply(mask, prob), kept)
    # a mask file written by `predict` has had the rule applied: without a map it is left as it is
    assert np.array_equal(setting.apply(kept), kept)
    assert PostProcess.from_dict(setting.to_dict()) == setting
    assert PostProcess(16, True, None, 0.9).replace(min_object_px=0) == PostProcess(0, True, None, 0.9)
    for bad in (1.0, -0.1, True):
        with pytest.raises(PostProcessError, match="min_peak"):
            PostProcess(min_peak=bad)
    with pytest.raises(PostProcessError, match="probability map"):
        clean_mask(mask, min_peak=0.9)


def test_the_joint_search_keeps_sure_small_objects_and_drops_unsure_specks():
    """Small true grains whose map is 0.4 with one sure pixel, and look-alike specks of the same size at 0.5:
    no minimum size and no threshold tells them apart (one above 0.4 shrinks each grain to its sure pixel),
    the peak rule does."""
    from artseg.thresholds import joint_threshold_postprocess

    truth = np.zeros((96, 96), bool)
    prob = np.full((96, 96), 0.02, np.float32)
    for k in range(5):
        truth[10 + 16 * k : 14 + 16 * k, 10:14] = True
        prob[10 + 16 * k : 14 + 16 * k, 10:14] = 0.4
        prob[11 + 16 * k, 11] = 0.95
        prob[10 + 16 * k : 14 + 16 * k, 60:64] = 0.5  # a speck of the same size, unsure
    t, post, scores = joint_threshold_postprocess([prob], [truth], 0.4)
    assert t <= 0.4  # every grain whole
    assert post.min_peak > 0.5 and scores["object_iou"] == 1.0
    assert np.array_equal(post.apply(prob >= t, prob), truth)


# --- models -------------------------------------------------------------------------------------


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)


def _speckle_threshold(model, image) -> float:
    """A threshold at which the untrained tiny U-Net's map breaks into many small and some large objects."""
    return float(np.percentile(model.predict_proba(image), 70))


def test_saved_model_reloads_its_postprocess_and_predict_mask_applies_it(tmp_path):
    save_tiny_unet(tmp_path / "m")
    model = load_method(tmp_path / "m", device="cpu")
    assert model.postprocess == PostProcess()  # off by default
    image = _image()
    model.settings = model.settings.replace(threshold=_speckle_threshold(model, image))
    prob, raw = model.predict_mask(image)
    assert np.array_equal(raw, prob >= model.threshold)
    model.settings = model.settings.replace(postprocess=PostProcess(min_object_px=10, fill_holes=True))
    model.save(tmp_path / "pp")
    assert json.loads((tmp_path / "pp" / "config.json").read_text())["postprocess"] == {
        "min_object_px": 10, "fill_holes": True, "max_hole_px": None}
    again = load_method(tmp_path / "pp", device="cpu")
    assert again.postprocess == PostProcess(10, True) and again.threshold == model.threshold
    prob2, mask = again.predict_mask(image)
    np.testing.assert_array_equal(prob2, prob)
    assert np.array_equal(mask, clean_mask(raw, 10, True))
    assert not np.array_equal(mask, raw) and min(sizes(mask)) >= 10
    # the Python API honours it, also with its own threshold
    api = artseg.load_model(tmp_path / "pp", device="cpu")
    raw_image = (20000 + 3000 * image).clip(0, 65535).astype(np.uint16)  # the API normalises raw images
    prob3, mask3 = again.predict_mask(api.prepare(raw_image))
    assert np.array_equal(mask3, clean_mask(prob3 >= again.threshold, 10, True))
    result = api.segment(raw_image)
    assert np.array_equal(result.mask, mask3) and result.n_objects == label_components(mask3)[1]
    cut = float(np.percentile(prob3, 60))
    assert np.array_equal(api.segment(raw_image, threshold=cut).mask, clean_mask(prob3 >= cut, 10, True))
    assert "objects >= 10 px, holes filled" in repr(api)
    with pytest.raises(ValueError, match="max_hole_px"):
        again.postprocess.replace(fill_holes=False, max_hole_px=5)


def test_models_saved_before_postprocess_load_with_it_off():
    desc = json.loads((FIXTURE_MODELS / "unet" / "config.json").read_text())
    assert "postprocess" not in desc
    assert load_method(FIXTURE_MODELS / "unet", device="cpu").postprocess == PostProcess()


def test_a_bad_saved_postprocess_names_the_file(tmp_path):
    from artseg.methods.base import ModelFileError

    save_tiny_unet(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    desc = json.loads(cfg.read_text())
    for bad in ({"min_object_px": -3}, "yes", {"fill_holes": "no"}):
        desc["postprocess"] = bad
        cfg.write_text(json.dumps(desc))
        with pytest.raises(ModelFileError, match="config.json"):
            load_method(tmp_path / "m", device="cpu")


def test_train_option_is_saved_with_the_model(tmp_path, capsys):
    from conftest import make_blob_dataset

    data = make_blob_dataset(tmp_path / "data", n_per_split=(2, 2, 0), size=32)
    tiny = ["--preset", "small", "--quiet", "--device", "cpu", "--precision", "32", "--set", "input_size=32",
            "--set", "base=4", "--set", "depth=2", "--set", "batch_size=4", "--set", "crops_per_image=1",
            "--max-epochs", "1", "--max-time", "0.05"]
    # a bad value fails before any training
    assert main(["train", "unet", "--data", str(data), "--out", str(tmp_path / "bad"), *tiny,
                 "--min-object-px", "-2"]) == 2
    assert "--min-object-px" in capsys.readouterr().err and not (tmp_path / "bad" / "config.json").exists()
    assert main(["train", "unet", "--data", str(data), "--out", str(tmp_path / "m"), *tiny,
                 "--min-object-px", "12", "--max-hole-px", "30"]) == 0
    assert "mask post-processing: objects >= 12 px, holes <= 30 px filled" in capsys.readouterr().out
    model = load_method(tmp_path / "m", device="cpu")
    assert model.postprocess == PostProcess(12, True, 30)
    # the val-chosen threshold is the best one for the post-processed masks the model writes
    from artseg.data import load_dataset
    from artseg.thresholds import iou_optimal_postprocessed

    val = load_dataset(data).split("val")
    pairs = [(model.predict_proba(model.read_sample(s)), s.read_truth((32, 32), "test")) for s in val]
    assert model.threshold == pytest.approx(iou_optimal_postprocessed(pairs, model.postprocess)[0])
    assert model.meta["threshold_choice"]["threshold"] == model.threshold


# --- artseg predict / evaluate ------------------------------------------------------------------


def test_predict_min_object_px_changes_masks_objects_and_table_consistently(tmp_path):
    save_tiny_unet(tmp_path / "m")
    model = load_method(tmp_path / "m", device="cpu")
    paths = make_plate(tmp_path / "P1", [(2, 5), (3, 5)], fields=1)
    threshold = _speckle_threshold(model, model.read(paths[0]))
    common = ["--threshold", repr(threshold), "--quiet", "--outputs", "mask,objects,prob", "--qc-max-fraction", "0.3"]
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "P1"), "--out", str(tmp_path / "raw"), *common]) == 0
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "P1"), "--out", str(tmp_path / "pp"), *common,
                 "--min-object-px", "8", "--fill-holes"]) == 0
    record = json.loads(layout.prediction_record_path(tmp_path / "pp").read_text())
    assert record["postprocess"] == {"min_object_px": 8, "fill_holes": True, "max_hole_px": None}
    assert json.loads(layout.prediction_record_path(tmp_path / "raw").read_text())["postprocess"] == PostProcess().to_dict()
    rows = {Path(r["file"]).stem: r for r in pq.read_table(layout.results_parquet_path(tmp_path / "pp")).to_pylist()}
    raw_rows = {Path(r["file"]).stem: r for r in pq.read_table(layout.results_parquet_path(tmp_path / "raw")).to_pylist()}
    changed = 0
    for path in paths:
        stem = path.stem
        raw = read_mask(layout.mask_path(tmp_path / "raw", stem))
        mask = read_mask(layout.mask_path(tmp_path / "pp", stem))
        assert np.array_equal(mask, clean_mask(raw, 8, True))
        changed += not np.array_equal(mask, raw)
        labels = tifffile.imread(layout.objects_path(tmp_path / "pp", stem))
        assert np.array_equal(labels > 0, mask) and labels.max() == label_components(mask)[1]
        row = rows[stem]
        assert row["n_objects"] == labels.max() < raw_rows[stem]["n_objects"]
        assert row["largest_object_px"] == max(sizes(mask))
        assert row["artefact_fraction"] == pytest.approx(mask.mean())
        assert row["qc_flag"] == (mask.mean() > 0.3)
        # the probability maps are the same: post-processing acts on masks only
        np.testing.assert_array_equal(tifffile.imread(layout.prob_path(tmp_path / "pp", stem)),
                                      tifffile.imread(layout.prob_path(tmp_path / "raw", stem)))
    assert changed == len(paths)


def test_predict_overrides_the_models_own_setting(tmp_path, capsys):
    save_tiny_unet(tmp_path / "m")
    model = load_method(tmp_path / "m", device="cpu")
    model.settings = model.settings.replace(postprocess=PostProcess(min_object_px=50, fill_holes=True))
    model.save(tmp_path / "m")
    paths = make_plate(tmp_path / "P1", [(2, 5)], fields=1)
    threshold = _speckle_threshold(model, model.read(paths[0]))
    base = ["predict", str(tmp_path / "m"), str(paths[0]), "--threshold", repr(threshold), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "own")]) == 0
    assert main([*base, "--out", str(tmp_path / "off"), "--min-object-px", "0", "--no-fill-holes"]) == 0
    stem = paths[0].stem
    prob = tifffile.imread(layout.prob_path(tmp_path / "own", stem))
    assert np.array_equal(read_mask(layout.mask_path(tmp_path / "own", stem)), clean_mask(prob >= threshold, 50, True))
    assert np.array_equal(read_mask(layout.mask_path(tmp_path / "off", stem)), prob >= threshold)
    rc = main([*base, "--out", str(tmp_path / "x"), "--max-hole-px", "4", "--no-fill-holes"])
    err = capsys.readouterr().err
    assert rc == 2 and "--max-hole-px" in err and err.count("\n") == 1


def _toy_split(root: Path) -> tuple[Dataset, Path]:
    """Two test images: truth one 6x6 square each; predictions the square, a hole in it and two specks."""
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    pred = root / "pred"
    pred.mkdir()
    rows = ["filename,label,split"]
    for i in range(2):
        truth = np.zeros((20, 20), dtype=bool)
        truth[5:11, 5:11] = True
        tifffile.imwrite(root / "data" / "images" / f"t{i}.tif", np.full((20, 20), 1000 + i, np.uint16))
        write_mask(root / "data" / "masks" / f"t{i}.png", truth)
        prob = truth.astype(np.float32) * 0.9
        prob[7, 7] = 0.1  # a hole
        prob[0, 0] = prob[15, 15 + i] = 0.8  # specks: false objects
        write_prob(pred / f"t{i}_prob.tif", prob)
        rows.append(f"t{i}.tif,artefact,test")
    (root / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    return Dataset.load(root / "data"), pred


def test_evaluate_applies_the_recorded_setting_or_the_override(tmp_path, capsys):
    ds, pred = _toy_split(tmp_path)
    raw = evaluate_predictions(ds, pred, threshold=0.5, progress=False)
    assert raw["object_iou"] == pytest.approx(2 / 6) and raw["postprocess"] == PostProcess().to_dict()
    clean = evaluate_predictions(ds, pred, threshold=0.5, progress=False, min_object_px=2, fill_holes=True)
    assert clean["object_iou"] == 1.0 and clean["pixel_iou"] == 1.0
    assert "objects >= 2 px, holes filled" in format_table(clean)
    # `artseg predict` records the model's setting; evaluate uses it unless told otherwise
    layout.prediction_record_path(pred).write_text(json.dumps(
        {"threshold": 0.5, "postprocess": {"min_object_px": 2, "fill_holes": True, "max_hole_px": None}}))
    assert evaluate_predictions(ds, pred, progress=False)["object_iou"] == 1.0
    assert evaluate_predictions(ds, pred, progress=False, min_object_px=0, fill_holes=False)["object_iou"] == pytest.approx(2 / 6)
    out = tmp_path / "res.json"
    assert main(["evaluate", "--data", str(ds.root), "--pred", str(pred), "--quiet", "--min-object-px", "0",
                 "--json", str(out)]) == 0
    assert "objects" not in capsys.readouterr().out.split("post-processing")[1].splitlines()[0]
    res = json.loads(out.read_text())
    assert res["postprocess"] == {"min_object_px": 0, "fill_holes": True, "max_hole_px": None}
    assert res["object_iou"] == pytest.approx(2 / 6)  # two specks per image stay
    # the specks (0.8) never reach 0.85, the square (0.9) does: hysteresis removes them whatever their size
    assert main(["evaluate", "--data", str(ds.root), "--pred", str(pred), "--quiet", "--min-object-px", "0",
                 "--min-peak", "0.85", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["postprocess"]["min_peak"] == 0.85 and res["object_iou"] == 1.0
    assert main(["evaluate", "--data", str(ds.root), "--pred", str(pred), "--quiet", "--min-peak", "1.5"]) != 0
    assert "--min-peak" in capsys.readouterr().err


def test_sweep_scores_every_setting_like_split_metrics(tmp_path):
    ds, pred = _toy_split(tmp_path)
    samples = ds.split("test")
    probs = [tifffile.imread(pred / f"{s.stem}_prob.tif") for s in samples]
    truths = [s.read_mask() for s in samples]
    rows = sweep_postprocess(iter(probs), iter(truths), 0.5)  # generators: one pass
    assert [(r["min_object_px"], r["fill_holes"]) for r in rows] == [(p.min_object_px, p.fill_holes) for p in POSTPROCESS_GRID]
    for row, setting in zip(rows, POSTPROCESS_GRID):
        acc = SplitMetrics()
        for p, t in zip(probs, truths):
            acc.add(clean_mask(p >= 0.5, setting.min_object_px, setting.fill_holes), t)
        ref = acc.result()
        for key in ("pixel_iou", "pixel_f1", "object_iou", "pixel_precision", "pixel_recall"):
            assert row[key] == ref[key]
        assert row["true_objects"] == 2 and row["n_images"] == 2 and row["threshold"] == 0.5
    first, filled, specks_gone = rows[0], rows[1], rows[2]
    assert first["pred_objects"] == 6 and first["object_tp"] == 2 and first["object_iou"] == pytest.approx(2 / 6)
    assert filled["pixel_iou"] > first["pixel_iou"] and filled["pred_objects"] == 6
    assert specks_gone["pred_objects"] == 2 and specks_gone["object_iou"] == 1.0
    custom = sweep_postprocess(probs, truths, 0.5, [{"min_object_px": 2, "fill_holes": True, "max_hole_px": 1}])
    assert custom[0]["pixel_iou"] == 1.0


def test_val_threshold_is_chosen_on_the_post_processed_masks():
    """A map that marks an artefact's rim high and its inside low, plus faint specks elsewhere: on raw maps the
    best cut is low (inside kept, specks too); with holes filled a high cut keeps the rim, fills the
    inside and drops the specks, which only the post-processing-aware search finds."""
    from artseg.postprocess import PostProcess
    from artseg.thresholds import iou_optimal, iou_optimal_postprocessed

    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    truth = r <= 12
    prob = np.zeros((64, 64), np.float32)
    prob[r <= 12] = 0.3
    prob[(r > 9) & (r <= 12)] = 0.9
    prob[2:60:6, 2] = 0.35  # specks, away from the disk
    raw_t, raw_iou = iou_optimal([(prob, truth)])
    fill = PostProcess(fill_holes=True)
    t, iou = iou_optimal_postprocessed([(prob, truth)], fill)
    assert raw_t <= 0.3 and raw_iou < 1
    assert 0.35 < t <= 0.9 and iou == 1.0
    assert np.array_equal(fill.apply(prob >= t), truth)


def test_threshold_and_post_processing_are_chosen_together_for_objects():
    """Two disks drawn as maps of 0.8 and a scatter of 0.8 specks: pixel IoU alone barely sees the specks,
    object IoU counts each one; the joint search drops them (min object size) and keeps both disks."""
    from artseg.postprocess import PostProcess
    from artseg.thresholds import POSTPROCESS_CHOICES, iou_optimal, joint_threshold_postprocess

    yy, xx = np.mgrid[:96, :96]
    truth = (np.hypot(yy - 30, xx - 30) <= 10) | (np.hypot(yy - 66, xx - 66) <= 12)
    prob = np.where(truth, 0.8, 0.05).astype(np.float32)
    prob[5:90:9, 85] = 0.8
    prob[85, 5:50:7] = 0.8
    centre, _ = iou_optimal([(prob, truth)])
    t, post, scores = joint_threshold_postprocess([prob], [truth], centre)
    assert post.min_object_px >= 16 and scores["object_iou"] == 1.0 and scores["pixel_iou"] == 1.0
    assert np.array_equal(post.apply(prob >= t), truth)
    # the raw mask at the same threshold: every speck an object of its own
    from artseg.metrics import object_counts

    assert object_counts(prob >= t, truth)[1] == 10 + 7
    assert PostProcess() in POSTPROCESS_CHOICES  # "none" is always a candidate


def test_postprocess_on_val_is_saved_with_the_model_and_a_given_setting_wins(tmp_path):
    from conftest import make_blob_dataset

    from artseg.run import RunOptions
    from artseg.training import train_model

    data = make_blob_dataset(tmp_path / "data", n_per_split=(2, 2, 0), size=32)
    tiny = {"input_size": "32", "base": "4", "depth": "2", "batch_size": "4", "max_epochs": "1", "tta": "none",
            "postprocess_on_val": "true"}
    run = RunOptions(device="cpu", progress=False, precision="32", work_dir=tmp_path / "work")
    model = train_model("unet", data, tmp_path / "m", preset="small", overrides=tiny, run=run)
    record = model.meta["threshold_choice"]
    assert "object IoU" in record["rule"] and "object_iou" in record
    assert PostProcess.from_dict(record["postprocess"]) == model.postprocess
    assert load_method(tmp_path / "m", device="cpu").settings == model.settings
    run = RunOptions(device="cpu", progress=False, precision="32", work_dir=tmp_path / "work")
    given = train_model("unet", data, tmp_path / "g", preset="small", overrides=tiny, run=run,
                        postprocess={"min_object_px": 5})
    assert given.postprocess == PostProcess(5) and "postprocess" not in given.meta["threshold_choice"]


def test_the_joint_search_gives_up_objects_before_it_gives_up_area():
    """A large true object the map is unsure of, small true grains it is sure of, and unsure false specks:
    the peak rule gets every grain right but loses the large object's area. Pixel + object IoU would take
    it; the search keeps the area (the most objects among settings within 0.02 of the best pixel IoU)."""
    from artseg.metrics import SplitMetrics
    from artseg.thresholds import PIXEL_IOU_TOLERANCE, joint_threshold_postprocess

    truth = np.zeros((64, 96), bool)
    prob = np.full(truth.shape, 0.02, np.float32)
    truth[5:15, 5:15] = True
    prob[5:15, 5:15] = 0.6  # large, true, never sure
    for k in range(5):
        truth[30:33, 5 + 8 * k : 8 + 8 * k] = True
        prob[30:33, 5 + 8 * k : 8 + 8 * k] = 0.6
        prob[31, 6 + 8 * k] = 0.99  # small, true, sure
    for k in range(10):
        prob[50:53, 5 + 8 * k : 8 + 8 * k] = 0.6  # small, false, unsure

    def scores(setting):
        split = SplitMetrics()
        split.add(setting.apply(prob >= 0.5, prob), truth)
        return split.result()

    peak, size = scores(PostProcess(min_peak=0.9)), scores(PostProcess(16))
    assert peak["pixel_iou"] + peak["object_iou"] > size["pixel_iou"] + size["object_iou"]  # what a sum would pick
    t, post, chosen = joint_threshold_postprocess([prob], [truth], 0.5)
    assert post.min_peak == 0 and post.min_object_px >= 16
    assert chosen["pixel_iou"] == pytest.approx(100 / 145)
    assert chosen["pixel_iou"] >= peak["pixel_iou"] + PIXEL_IOU_TOLERANCE


def test_labelled_once_cleaning_equals_clean_mask_for_every_searched_setting():
    """The val search cleans one labelling many times (`MaskObjects`); each result must be `clean_mask`'s,
    and the label-based hole filling must be scipy's binary_fill_holes (4-connected, the border open)."""
    from scipy import ndimage

    from artseg.postprocess import MaskObjects
    from artseg.thresholds import POSTPROCESS_CHOICES

    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter(rng.random((64, 80)), 1.5).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    for t in (0.4, 0.55, 0.7):
        objects = MaskObjects(prob >= t, prob)
        for setting in POSTPROCESS_CHOICES + (PostProcess(4, True, 6, 0.9),):
            expected = clean_mask(prob >= t, setting.min_object_px, setting.fill_holes, setting.max_hole_px, prob,
                                  setting.min_peak)
            assert np.array_equal(setting.apply_to(objects), expected), (t, setting)
            assert np.array_equal(setting.apply(prob >= t, prob), expected)
        assert np.array_equal(clean_mask(prob >= t, fill_holes=True), ndimage.binary_fill_holes(prob >= t))


def test_the_shared_search_takes_the_measured_pair_below_the_pixel_optimum():
    """`postprocess_search="shared"` (the `unet` `small` preset's) cuts at SHARED_THRESHOLD_FACTOR x the
    pixel-optimal val threshold and keeps only objects whose map reaches SHARED_POSTPROCESS's peak: a faint
    rim above the lower cut is kept with its sure object, an unsure false speck is dropped."""
    from artseg.config import ConfigError
    from artseg.methods.segmenter.base import SegmenterConfig
    from artseg.prediction import PredictionSettings
    from artseg.thresholds import (
        SHARED_POSTPROCESS,
        SHARED_THRESHOLD_FACTOR,
        iou_optimal,
        joint_threshold_postprocess,
        val_mask_threshold,
    )

    truth = np.zeros((48, 48), bool)
    prob = np.full(truth.shape, 0.05, np.float32)
    truth[10:22, 10:22] = True
    prob[10:22, 10:22] = 0.45  # the object's faint rim
    prob[12:20, 12:20] = 0.98  # its sure core
    prob[35:38, 35:38] = 0.4  # a false speck, never sure: above 0.7 x the pixel optimum

    class Model:  # what val_mask_threshold reads of a model
        settings = PredictionSettings()

        def read_sample(self, sample):
            return sample

        def predict_map(self, image):
            return prob

    class Sample:
        def read_truth(self, shape, purpose):
            return truth

    centre, _ = iou_optimal([(prob, truth)])
    assert 0.4 < centre <= 0.45  # the pixel optimum: the rim in, the speck out
    choice = val_mask_threshold(Model(), [Sample()], choose_postprocess="shared")
    assert choice.threshold == pytest.approx(SHARED_THRESHOLD_FACTOR * centre, abs=1e-4)
    assert choice.postprocess == SHARED_POSTPROCESS and "measured for every model" in choice.rule
    cut = Model.settings.replace(threshold=choice.threshold, postprocess=choice.postprocess)
    assert np.array_equal(cut.mask(prob), truth) and choice.iou == 1.0 and choice.object_iou == 1.0
    # the grid, by contrast, may pick any of its settings; it finds the same perfect pair here
    assert joint_threshold_postprocess([prob], [truth], centre)[2]["pixel_iou"] == 1.0
    with pytest.raises(ValueError, match="choose_postprocess"):
        val_mask_threshold(Model(), [Sample()], choose_postprocess="bogus")
    assert SegmenterConfig.build("small").postprocess_search == "shared"
    assert SegmenterConfig.build("study").postprocess_search == "grid"
    with pytest.raises(ConfigError, match="postprocess_search"):
        SegmenterConfig.build("small", {"postprocess_search": "bogus"})
