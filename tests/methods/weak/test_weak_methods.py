"""`scorecam` and `scorecam-unet`: the image gate, the single-class refusal, and no pixel labels ever read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_blob_dataset

from artseg.cli import main as cli_main
from artseg.config import ConfigError
from artseg.data import DatasetError, Sample, load_dataset
from artseg.methods import get, load_method
from artseg.methods.segmenter.base import IGNORE, segmentation_loss
from artseg.methods.weak.pseudo_labels import combine_pseudo_labels, with_ignore_band
from artseg.methods.weak.scorecam import ScoreCAMConfig, ScoreCAMMethod
from artseg.methods.weak.scorecam_unet import ScoreCAMUNetConfig
from artseg.run import RunOptions

TINY_CAM = {"backbone": "tiny", "input_size": 64, "max_epochs": 2, "batch_size": 4, "cam_chunk": 32}
TINY_UNET = {
    "cls_backbone": "tiny", "cls_input_size": 64, "cls_max_epochs": 1, "cls_batch_size": 4, "cam_chunk": 32,
    "input_size": 64, "base": 4, "depth": 2, "max_epochs": 1, "batch_size": 4, "train_crop": "center",
    "rounds": 2,  # also runs one self-training round
}


@pytest.fixture
def no_masks(tmp_path, monkeypatch):
    """A dataset with no masks/ folder, and Sample.read_mask made to fail loudly."""
    root = make_blob_dataset(tmp_path / "weak", n_per_split=(6, 2, 2), masks=False)
    assert not (root / "masks").exists()

    def forbidden(self):
        raise AssertionError(f"weak method read a pixel mask: {self.stem}")

    monkeypatch.setattr(Sample, "read_mask", forbidden)
    return root


def _model_with_bias(bias: float) -> ScoreCAMMethod:
    torch.manual_seed(0)
    model = ScoreCAMMethod(ScoreCAMConfig(**TINY_CAM))
    with torch.no_grad():
        model.classifier.head.bias.fill_(bias)  # pushes the artefact logit far below / above the gate
    return model


def test_gate_returns_empty_map_without_running_scorecam(monkeypatch):
    image = np.random.default_rng(0).random((80, 96), dtype=np.float32)
    closed = _model_with_bias(-50.0)
    assert closed.image_score(image) < closed.image_threshold == closed.config.gate
    monkeypatch.setattr(closed.core, "cam_map", lambda *a, **k: pytest.fail("Score-CAM ran on a gated image"))
    prob = closed.predict_proba(image)
    assert prob.shape == image.shape and prob.dtype == np.float32 and not prob.any()

    opened = _model_with_bias(50.0)
    prob = opened.predict_proba(image)
    assert prob.shape == image.shape and prob.max() > 0.5 and prob.min() >= 0  # 80 x 96 through 64-px tiles


def test_tile_gate_empties_tiles_the_classifier_calls_clean():
    image = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    model = _model_with_bias(-50.0)
    assert model.core.cam_map(image, tile_gate=False).max() > 0.5
    assert not model.core.cam_map(image, tile_gate=True).any()


@pytest.mark.parametrize("method", ["scorecam", "scorecam-unet"])
def test_single_class_training_split_is_refused(tmp_path, method):
    root = make_blob_dataset(tmp_path / "one", n_per_split=(6, 2, 2), masks=False)
    lines = root.joinpath("labels.csv").read_text().splitlines()
    root.joinpath("labels.csv").write_text("\n".join([lines[0]] + [ln.replace(",clean,train", ",artefact,train") for ln in lines[1:]]) + "\n")
    cls = get(method)
    with pytest.raises(DatasetError, match=r"labels\.csv: .*needs clean and artefact images in the train split \(found artefact\)$"):
        cls.fit(load_dataset(root), cls.config_class.build("study", {}), RunOptions(device="cpu", work_dir=tmp_path / "w", progress=False))


def test_scorecam_end_to_end_without_masks(no_masks, tmp_path):
    ds = load_dataset(no_masks)
    model = ScoreCAMMethod.fit(ds, ScoreCAMConfig.build("study", TINY_CAM), RunOptions(device="cpu", work_dir=tmp_path / "m", progress=False))
    assert model.supervision == "weak" and 0 < model.threshold < 1
    assert "Otsu" in model.meta["threshold_choice"]["rule"] and "val_accuracy" in model.meta["classifier"]
    model.save(tmp_path / "m")
    again = load_method(tmp_path / "m", device="cpu")
    image = again.read(ds.split("test")[0].image_path)
    assert np.array_equal(again.predict_proba(image), model.predict_proba(image))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["supervision"] == "weak"

    # scorecam-unet reusing this classifier (the study's one-classifier pipeline) trains none itself
    tiny_unet = {**TINY_UNET, "rounds": 1, "pseudo_rule": "otsu", "classifier_model": str(tmp_path / "m"),
                 "pseudo_refine": "superpixel"}
    work = tmp_path / "su"
    su = get("scorecam-unet").fit(ds, ScoreCAMUNetConfig.build("study", tiny_unet), RunOptions(device="cpu", work_dir=work, progress=False))
    assert not (work / "classifier_log.csv").exists() and (work / "unet_round1_log.csv").exists()
    assert su.meta["classifier"]["reused_from"] == str(tmp_path / "m")
    assert su.meta["classifier"]["val_accuracy"] == model.meta["classifier"]["val_accuracy"]
    assert su.meta["pseudo_labels"]["rule"].endswith("(superpixel-refined Score-CAM)")
    su.save(tmp_path / "su_model")
    with pytest.raises(ValueError, match="not a 'scorecam' one"):
        get("scorecam-unet").fit(ds, ScoreCAMUNetConfig.build("study", {**tiny_unet, "classifier_model": str(tmp_path / "su_model")}),
                                 RunOptions(device="cpu", work_dir=tmp_path / "bad", progress=False))


def test_scorecam_unet_end_to_end_through_cli_without_masks(no_masks, tmp_path):
    out = tmp_path / "su"
    sets = [a for k, v in TINY_UNET.items() for a in ("--set", f"{k}={v}")]
    assert cli_main(["train", "scorecam-unet", "--data", str(no_masks), "--out", str(out), "--device", "cpu", "--quiet", *sets]) == 0
    desc = json.loads((out / "config.json").read_text())
    assert desc["supervision"] == "weak" and desc["threshold"] == 0.5
    assert 0 <= desc["meta"]["pseudo_labels"]["threshold"] <= 1
    assert (out / "unet_round2_log.csv").exists()  # the self-training round trained a second U-Net
    assert cli_main(["predict", str(out), str(no_masks / "images"), "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet"]) == 0
    assert len(list((tmp_path / "pred").rglob("*.tif"))) == 10


def test_calibrate_val_uses_val_masks_and_records_semi(tmp_path):
    root = make_blob_dataset(tmp_path / "masked", n_per_split=(6, 2, 2))
    config = ScoreCAMConfig.build("study", {**TINY_CAM, "max_epochs": 1, "calibrate": "val"})
    model = ScoreCAMMethod.fit(load_dataset(root), config, RunOptions(device="cpu", work_dir=tmp_path / "m", progress=False))
    assert model.supervision == "semi" and "val masks" in model.meta["threshold_choice"]["rule"]
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["supervision"] == "semi"
    assert load_method(tmp_path / "m", device="cpu").supervision == "semi"


def test_combine_pseudo_labels_rules():
    anomaly = np.zeros((40, 40), np.float32)
    anomaly[5:15, 5:15] = 0.9  # blob A: half inside the Score-CAM region below
    anomaly[25:35, 25:35] = 0.8  # blob B: far from it
    cam = np.full((40, 40), 0.1, np.float32)
    cam[0:20, 0:10] = 0.95
    (only,), _ = combine_pseudo_labels("anomaly", None, [anomaly], 0.5)
    assert only.sum() == 200  # both blobs, the image label is the only gate
    (inter,), info = combine_pseudo_labels("cam*anomaly", [cam], [anomaly], 0.5)
    assert inter.sum() == 50 and inter[5:15, 5:10].all() and "Score-CAM >=" in info
    (blobs,), _ = combine_pseudo_labels("cam+anomaly", [cam], [anomaly], 0.5)
    assert blobs.sum() == 100 and blobs[5:15, 5:15].all() and not blobs[25:35, 25:35].any()


def test_hysteresis_grows_confident_blobs_only():
    anomaly = np.zeros((40, 40), np.float32)
    anomaly[5:15, 5:15] = 0.9  # a confident seed ...
    anomaly[15:20, 5:15] = 0.35  # ... with a faint rim attached to it
    anomaly[30:35, 30:35] = 0.35  # a faint blob with no seed: stays out
    (plain,), _ = combine_pseudo_labels("anomaly", None, [anomaly], 0.5)
    (grown,), _ = combine_pseudo_labels("anomaly", None, [anomaly], 0.5, low=0.3)
    assert plain.sum() == 100
    assert grown.sum() == 150 and grown[15:20, 5:15].all() and not grown[30:35, 30:35].any()
    with pytest.raises(ConfigError, match="anomaly_low"):
        ScoreCAMUNetConfig.build("study", {"anomaly_low": "0.7"}).validate()


def test_ignore_band_marks_unsure_pixels_and_leaves_them_out_of_the_loss():
    anomaly = np.zeros((20, 20), np.float32)
    anomaly[2:6, 2:6] = 0.9
    anomaly[10:14, 10:14] = 0.3  # unsure: neither artefact nor clean
    target = with_ignore_band(anomaly >= 0.5, anomaly, 0.2)
    assert (target == 1).sum() == 16 and (target == IGNORE).sum() == 16 and (target == 0).sum() == 400 - 32
    logits = torch.randn(1, 1, 20, 20)
    y = torch.from_numpy(target)[None, None]
    for name in ("bce", "bce+dice"):
        loss = segmentation_loss(name)
        changed = logits.clone()
        changed[y < 0] += 50.0  # whatever the net says on ignored pixels ...
        assert torch.allclose(loss(logits, y), loss(changed, y))  # ... costs nothing
        assert not torch.allclose(loss(logits, y), loss(logits, y.clamp(min=0)))
    plain = (anomaly >= 0.5).astype(np.float32)
    yp = torch.from_numpy(plain)[None, None]
    assert torch.allclose(segmentation_loss("bce")(logits, yp), F.binary_cross_entropy_with_logits(logits, yp))
    with pytest.raises(ConfigError, match="ignore_low"):
        ScoreCAMUNetConfig.build("study", {"pseudo_rule": "anomaly", "ignore_low": "0.6"}).validate()
    with pytest.raises(ConfigError, match="ignore_low needs an anomaly"):
        ScoreCAMUNetConfig.build("study", {"ignore_low": "0.2"}).validate()
    with pytest.raises(ConfigError, match="anomaly_tta"):
        ScoreCAMUNetConfig.build("study", {"anomaly_tta": "rot45"}).validate()
    with pytest.raises(ConfigError, match="pseudo_refine='crf'"):
        ScoreCAMUNetConfig.build("study", {"pseudo_refine": "crf"}).validate()


@pytest.mark.parametrize("rule", ["anomaly", "cam+anomaly"])
def test_scorecam_unet_anomaly_rules_without_masks(no_masks, tmp_path, rule):
    sets = {"ignore_low": 0.2, "calibrate": "pseudo", "anomaly_tta": "flips"} if rule == "anomaly" else {"pseudo_refine": "superpixel", "refine": "superpixel"}
    config = ScoreCAMUNetConfig.build("study", {**TINY_UNET, "rounds": 1, "pseudo_rule": rule, "anomaly_preset": "small", **sets})
    model = get("scorecam-unet").fit(load_dataset(no_masks), config, RunOptions(device="cpu", work_dir=tmp_path / "m", progress=False))
    assert model.supervision == "weak" and model.meta["anomaly_model"]["method"] == "padim"
    assert model.meta["pseudo_labels"]["rule"].startswith(f"{rule}: padim probability >= 0.5")
    assert ("classifier" in model.meta) == (rule != "anomaly")  # the anomaly rule needs no classifier
    assert 0 <= model.meta["pseudo_labels"]["mean_artefact_fraction"] < 1
    ignored = model.meta["pseudo_labels"]["mean_ignored_fraction"]
    assert (ignored > 0 and "ignored by the loss" in model.meta["pseudo_labels"]["rule"]) if rule == "anomaly" else ignored == 0
    assert ("(flips mean of the anomaly map)" in model.meta["pseudo_labels"]["rule"]) == (rule == "anomaly")
    assert ("(superpixel-refined)" in model.meta["pseudo_labels"]["rule"]) == (rule == "cam+anomaly")
    if rule == "anomaly":  # calibrate=pseudo: the threshold comes from the val pseudo-labels, still no pixel label read
        assert "val pseudo-labels" in model.meta["threshold_choice"]["rule"] and 0 <= model.threshold <= 1
        assert 0 <= model.meta["threshold_choice"]["iou"] <= 1
    else:  # refine=superpixel: refined maps at REFINED_THRESHOLD
        assert model.refine == "superpixel" and model.threshold == 0.35 and "superpixel-refined maps" in model.meta["threshold_choice"]["rule"]


def test_self_training_labels_are_refined_when_refine_is_set(monkeypatch):
    """rounds > 1 with refine: the next round trains on the refined maps at REFINED_THRESHOLD, clean images stay empty."""
    from artseg.methods.weak.scorecam_unet import ScoreCAMUNetMethod
    from artseg.refine import REFINED_THRESHOLD, superpixel_mean

    rng = np.random.default_rng(0)
    image = rng.normal(0.5, 0.02, (48, 48)).astype(np.float32)
    image[10:30, 12:28] -= 0.3  # a dark object with sharp edges
    coarse = np.zeros_like(image)
    coarse[6:34, 8:32] = 0.6  # the model's blurry, too-large map of it
    for how, want in (("none", coarse >= 0.5), ("superpixel", superpixel_mean(image, coarse) >= REFINED_THRESHOLD)):
        model = ScoreCAMUNetMethod(ScoreCAMUNetConfig.build("study", {"refine": how}))
        monkeypatch.setattr(model.segmenter, "predict_proba", lambda im, **kw: coarse)  # the round's network
        art, clean = model._self_labels([image, image], [True, False], [None, None], RunOptions(progress=False), "self-labels")
        assert np.array_equal(art, want) and not clean.any()
    assert not np.array_equal(coarse >= 0.5, superpixel_mean(image, coarse) >= REFINED_THRESHOLD)


def test_label_refine_decouples_training_labels_from_prediction(monkeypatch):
    """label_refine=superpixel with refine=none: refined self-labels, unrefined predictions (the refine-free student)."""
    from artseg.methods.weak.scorecam_unet import ScoreCAMUNetMethod
    from artseg.refine import REFINED_THRESHOLD, superpixel_mean

    rng = np.random.default_rng(0)
    image = rng.normal(0.5, 0.02, (48, 48)).astype(np.float32)
    image[10:30, 12:28] -= 0.3
    coarse = np.zeros_like(image)
    coarse[6:34, 8:32] = 0.6
    model = ScoreCAMUNetMethod(ScoreCAMUNetConfig.build("study", {"refine": "none", "label_refine": "superpixel"}))
    monkeypatch.setattr(model.segmenter, "predict_proba", lambda im, **kw: coarse)  # the round's network
    art, _ = model._self_labels([image, image], [True, False], [None, None], RunOptions(progress=False), "self-labels")
    assert np.array_equal(art, superpixel_mean(image, coarse) >= REFINED_THRESHOLD)
    prob, mask = model.predict_mask(image)
    assert model.refine == "none" and model.threshold == 0.5
    assert np.array_equal(prob, coarse) and np.array_equal(mask, coarse >= 0.5)
    with pytest.raises(ConfigError, match="label_refine"):
        ScoreCAMUNetConfig.build("study", {"label_refine": "blur"})
    with pytest.raises(ConfigError, match="final_scale"):
        ScoreCAMUNetConfig.build("study", {"final_scale": 2})


def test_narrow_low_resolution_final_student_is_trained_saved_and_reloaded(no_masks, tmp_path):
    """final_base/final_scale: round 1 trains the full U-Net, the last round the narrow half-resolution one,
    which is what predicts, is saved, and is rebuilt from config.json."""
    from artseg.methods import load_method

    sets = {**TINY_UNET, "rounds": 2, "pseudo_rule": "anomaly", "anomaly_preset": "small", "refine": "none",
            "label_refine": "superpixel", "final_base": 2, "final_scale": 0.5, "tta": "none"}
    config = ScoreCAMUNetConfig.build("study", sets)
    model = get("scorecam-unet").fit(load_dataset(no_masks), config, RunOptions(device="cpu", progress=False, work_dir=tmp_path / "w"))
    assert (tmp_path / "w" / "unet_round1_log.csv").exists() and (tmp_path / "w" / "unet_round2_log.csv").exists()
    net = model.segmenter.net
    assert model.segmenter.config.base == 2 and model.segmenter.config.scale == 0.5
    seen = []
    net.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    image = np.random.default_rng(1).random((64, 96), dtype=np.float32)
    prob = model.predict_proba(image)
    assert prob.shape == (64, 96) and seen[0] == (32, 64)  # the half-resolution image, padded to a multiple of 32
    model.save(tmp_path / "m")
    loaded = load_method(tmp_path / "m", device="cpu")
    assert loaded.segmenter.config.base == 2
    assert np.array_equal(loaded.predict_proba(image), prob)


def test_fast_student_shares_the_full_students_first_round_and_takes_the_runs_tta(no_masks, tmp_path):
    """A fast student (final_base/final_scale) and the full one, same seed: their first rounds are the same
    training (the like-for-like comparison of benchmarks/weak_seeds.py). A TTA in the model's settings (what
    `predict --tta` sets) is what the final student predicts with, and leaves the record of the self-labels'
    TTA alone."""
    import csv

    # cam+anomaly: the classifier is built after the placeholder network, so its weights too must not depend on it
    base = {**TINY_UNET, "rounds": 2, "pseudo_rule": "cam+anomaly", "anomaly_preset": "small", "refine": "none",
            "label_refine": "superpixel", "tta": "none"}
    logs = {}
    for name, extra in (("full", {}), ("fast", {"final_base": 2, "final_scale": 0.5})):
        config = ScoreCAMUNetConfig.build("study", {**base, **extra})
        model = get("scorecam-unet").fit(load_dataset(no_masks), config,
                                         RunOptions(device="cpu", seed=3, progress=False, work_dir=tmp_path / name))
        logs[name] = []
        for log in ("classifier_log.csv", "unet_round1_log.csv"):
            with open(tmp_path / name / log) as fh:
                logs[name] += [(log, r["epoch"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(fh)]
    assert logs["full"] == logs["fast"] and logs["full"]
    passes = []
    model.segmenter.net.register_forward_hook(lambda mod, inp, out: passes.append(inp[0].shape[0]))
    image = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    plain = model.predict_proba(image)
    one = sum(passes)
    model.settings = model.settings.replace(tta="d4")
    assert model.settings.tta == "d4"
    assert model.config.tta == "none"  # how the self-labels were made: a record of training, unchanged
    averaged = model.predict_proba(image)
    assert sum(passes) - one == 8 * one and not np.allclose(averaged, plain)
    with pytest.raises(ConfigError, match="tta"):
        model.settings.replace(tta="rotate")
    model.save(tmp_path / "m")  # a saved TTA choice is the one the reloaded final student predicts with
    assert load_method(tmp_path / "m", device="cpu").settings.tta == "d4"


def test_fast_preset_predicts_with_a_narrow_half_resolution_one_pass_student():
    """`fast` = `small` with its last round narrow, at half resolution and without TTA at prediction; the
    rounds before (which make the self-labels) keep `small`'s TTA."""
    small, fast = ScoreCAMUNetConfig.build("small", {}), ScoreCAMUNetConfig.build("fast", {})
    assert small.final_student().tta == small.tta == fast.tta != "none"
    student = fast.final_student()
    assert (student.base, student.scale, student.tta) == (8, 0.5, "none") and fast.rounds == small.rounds
    model = get("scorecam-unet")(fast)
    assert model.settings.tta == "none" and model.config.tta == small.tta
    with pytest.raises(ConfigError, match="final_tta"):
        ScoreCAMUNetConfig.build("small", {"final_tta": "sideways"})


@pytest.mark.parametrize("scaling", ["robust", "percentile"])
def test_teacher_and_reused_classifier_read_images_with_their_own_scaling(tmp_path, scaling):
    """A student with the quartile scaling still feeds its percentile-fitted anomaly teacher, and a classifier
    reused from a (percentile) `scorecam` model, percentile-scaled images."""
    from artseg.io import PERCENTILE_SCALING
    from artseg.methods.base import read_images
    from artseg.methods.weak.scorecam_unet import ScoreCAMUNetMethod

    samples = load_dataset(make_blob_dataset(tmp_path / "d", n_per_split=(4, 1, 1))).split("train")
    model = ScoreCAMUNetMethod(ScoreCAMUNetConfig.build("study", {"pseudo_rule": "cam+anomaly", "scaling": scaling}))
    model._classifier_normalisation = PERCENTILE_SCALING  # what `_classifier` records for a reused classifier
    images = read_images(model, samples, "train", progress=False)
    rng = np.random.default_rng(0)
    seen = {"teacher": [], "classifier": []}

    class Teacher:  # records what it is given
        normalisation = PERCENTILE_SCALING

        def predict_proba(self, image):
            seen["teacher"].append(image)
            return rng.random(image.shape).astype(np.float32)

    class Classifier:
        def label_maps(self, batch, cam, view):
            seen["classifier"].extend(batch)
            return [rng.random(im.shape).astype(np.float32) for im in batch]

    masks = model._pseudo_labels(Classifier(), Teacher(), images, [True] * len(samples), RunOptions(progress=False),
                                 samples=samples)
    assert len(masks) == len(samples) and all(m is not None for m in masks)
    want = sorted(s.read_image(normalisation=PERCENTILE_SCALING).tobytes() for s in samples)
    # every image once (in the stage's shuffled order), each exactly as the teacher / classifier reads it
    assert sorted(a.tobytes() for a in seen["teacher"]) == want
    assert sorted(a.tobytes() for a in seen["classifier"]) == want
    # the student's own images differ from those under the quartile scaling (else the test proves nothing)
    assert (sorted(a.tobytes() for a in images) != want) == (scaling == "robust")
