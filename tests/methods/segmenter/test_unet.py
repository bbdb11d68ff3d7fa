import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artseg.cli import main
from artseg.config import ConfigError
from artseg.data import load_dataset
from artseg.methods import get, load_method
from artseg.methods.segmenter.base import SegmenterConfig
from artseg.run import RunOptions

TINY = {"input_size": "32", "base": "4", "depth": "3", "max_epochs": "3", "batch_size": "4", "crops_per_image": "1"}


def _fit(root: Path, work: Path, precision: str = "auto", **extra):
    cls = get("unet")
    cfg = cls.config_class.build("small", {**TINY, **extra})
    return cls.fit(load_dataset(root), cfg, RunOptions(device="cpu", work_dir=work, progress=False, precision=precision))


def test_training_reduces_loss_and_logs_every_epoch(blob_dataset, tmp_path):
    _fit(blob_dataset, tmp_path / "m", max_epochs="6", lr="0.01")
    rows = list(csv.DictReader(open(tmp_path / "m" / "unet_log.csv")))
    assert len(rows) == 6
    assert {"epoch", "train_loss", "val_loss", "val_iou", "lr"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_save_load_identical_predictions_and_config(blob_dataset, tmp_path):
    model = _fit(blob_dataset, tmp_path / "m")
    model.save(tmp_path / "m")
    loaded = load_method(tmp_path / "m", device="cpu")
    cfg = __import__("json").loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["method"] == "unet" and cfg["hyperparameters"]["input_size"] == 32
    assert cfg["threshold"] == pytest.approx(model.threshold)
    assert cfg["meta"]["training_data"]["train"]["artefact"] == 3
    image = np.random.default_rng(0).random((50, 77), dtype=np.float32)
    a, b = model.predict_proba(image), loaded.predict_proba(image)
    assert a.shape == (50, 77) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_same_seed_same_model_on_cpu(blob_dataset, tmp_path):
    a = _fit(blob_dataset, tmp_path / "a").state_dict()
    b = _fit(blob_dataset, tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_interrupted_run(blob_dataset, tmp_path):
    _fit(blob_dataset, tmp_path / "m", max_epochs="2")
    log = tmp_path / "m" / "unet_log.csv"
    # A sentinel in the finished epochs' rows: a run that restarts instead of resuming rewrites them.
    marked = [{**r, "seconds": "-1.0"} for r in csv.DictReader(open(log))]
    with open(log, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(marked[0]))
        writer.writeheader()
        writer.writerows(marked)
    cls = get("unet")
    cfg = cls.config_class.build("small", {**TINY, "max_epochs": "4"})
    cls.fit(load_dataset(blob_dataset), cfg, RunOptions(device="cpu", work_dir=tmp_path / "m", resume=True, progress=False))
    rows = list(csv.DictReader(open(log)))
    assert rows[:2] == marked and [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]


def test_input_size_must_divide_by_two_to_the_depth():
    with pytest.raises(ValueError, match="divisible by 32"):
        SegmenterConfig.build("study", {"input_size": "1000"}).validate()
    with pytest.raises(ConfigError, match="unknown hyper-parameter"):
        SegmenterConfig.build("study", {"nonsense": "1"})


def test_scaling_is_chosen_by_the_config_and_the_saved_one_wins_on_load(tmp_path):
    from artseg.io import PERCENTILE_SCALING, ROBUST_SCALING, Normalisation

    cls = get("unet")
    tiny = {"base": 4, "depth": 2, "input_size": 32}
    assert cls(SegmenterConfig.build("small", tiny)).normalisation == ROBUST_SCALING
    assert cls(SegmenterConfig.build("study", tiny)).normalisation == PERCENTILE_SCALING
    assert get("detector-unet").config_class.build("small", {}).scaling == "percentile"  # not measured there
    assert get("scorecam-unet").config_class.build("small", {}).scaling == "robust"  # the student's, since 2026-12-08
    assert get("scorecam-unet").config_class.build("study", {}).scaling == "percentile"
    with pytest.raises(ConfigError, match="scaling='zscore'"):
        SegmenterConfig.build("small", {"scaling": "zscore"})
    # A folder saved before `scaling` and gain/offset existed: its normalisation has only low/high/clip,
    # its config no `scaling` key; it loads with the percentiles it was trained with.
    model = cls(SegmenterConfig.build("small", tiny), Normalisation(low=2.0, high=99.0))
    folder = model.save(tmp_path / "old")
    desc = json.loads((folder / "config.json").read_text())
    desc["normalisation"] = {"low": 2.0, "high": 99.0, "clip": True}
    desc["hyperparameters"].pop("scaling")
    (folder / "config.json").write_text(json.dumps(desc))
    assert load_method(folder, device="cpu").normalisation == Normalisation(low=2.0, high=99.0)


def test_cli_train_predict_evaluate_with_corrupt_image(blob_dataset, tmp_path, capsys):
    model_dir, pred = tmp_path / "model", tmp_path / "pred"
    args = ["train", "unet", "--data", str(blob_dataset), "--out", str(model_dir), "--preset", "small", "--quiet",
            "--input-size", "32", "--max-epochs", "2", "--device", "cpu"]
    args += sum((["--set", f"{k}={v}"] for k, v in TINY.items() if k not in ("input_size", "max_epochs")), [])
    assert main(args) == 0
    assert (model_dir / "weights.safetensors").is_file() and (model_dir / "config.json").is_file()
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    rc = main(["predict", str(model_dir), str(blob_dataset / "images"), str(bad), "--out", str(pred), "--quiet"])
    assert rc == 2
    assert "bad.tif" in capsys.readouterr().err
    test_stems = [p.stem for p in (blob_dataset / "images").iterdir()]
    for stem in test_stems:
        assert (pred / f"{stem}_prob.tif").is_file() and (pred / f"{stem}_mask.png").is_file()
    assert not list(pred.glob("bad*")) and not list(pred.glob(".*part"))
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--data", str(blob_dataset), "--pred", str(pred), "--optimise-on", "val",
                 "--json", str(out_json), "--overlays", str(tmp_path / "ov"), "--quiet"]) == 0
    result = __import__("json").loads(out_json.read_text())
    for key in ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou", "threshold", "n_images"):
        assert key in result
    assert result["n_images"] == 2
    # without --threshold/--optimise-on, the predicting model's own threshold is used
    assert main(["evaluate", "--data", str(blob_dataset), "--pred", str(pred), "--json", str(out_json), "--quiet"]) == 0
    model_threshold = __import__("json").loads((model_dir / "config.json").read_text())["threshold"]
    assert __import__("json").loads(out_json.read_text())["threshold"] == pytest.approx(model_threshold)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 2


def test_cli_reports_bad_dataset_in_one_line(tmp_path, capsys):
    rc = main(["train", "unet", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "nope" in err


def test_small_preset_anneals_over_the_epochs(blob_dataset, tmp_path):
    assert get("unet").config_class.build("small").scheduler == "cosine"  # the plateau rule only on request
    _fit(blob_dataset, tmp_path / "m", max_epochs="4", lr="0.01")
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "m" / "unet_log.csv"))]
    assert len(lrs) == 4 and all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing, epoch by epoch
    assert lrs[0] < 0.01 and lrs[-1] == pytest.approx(0.01 * 0.01, rel=1e-6)  # ends at the floor


def test_precision_auto_is_bf16_on_gpu_and_native_bf16_cpus_only(monkeypatch):
    from artseg import run

    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: False)
    assert run.resolve_precision("auto", torch.device("cpu")) == "32-true"
    assert run.resolve_precision("auto", torch.device("cuda")) == "bf16-mixed"
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: True)
    assert run.resolve_precision("auto", torch.device("cpu")) == "bf16-mixed"
    assert run.resolve_precision("32", torch.device("cuda")) == "32-true"
    with pytest.raises(ValueError, match="fp16"):
        run.resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_training_in_either_precision_returns_fp32_weights(blob_dataset, tmp_path, precision):
    model = _fit(blob_dataset, tmp_path / "m", precision=precision, max_epochs="6", lr="0.01")
    losses = [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / "m" / "unet_log.csv"))]
    assert losses[-1] < losses[0]
    # trained under autocast, handed back with fp32 weights that save and load to the same predictions
    assert all(t.dtype == torch.float32 for t in model.segmenter.net.state_dict().values() if t.is_floating_point())
    model.save(tmp_path / "m")
    image = np.random.default_rng(2).random((40, 40), dtype=np.float32)
    assert np.array_equal(model.predict_proba(image), load_method(tmp_path / "m", device="cpu").predict_proba(image))


def test_reduced_scale_trains_and_predicts_at_that_resolution(blob_dataset, tmp_path):
    """scale=0.5: the network sees half-resolution images in training and prediction; maps come back full size."""
    model = _fit(blob_dataset, tmp_path / "m", scale="0.5", tta="none")
    seen = []
    model.segmenter.net.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    image = np.random.default_rng(0).random((64, 128), dtype=np.float32)
    prob = model.predict_proba(image)
    assert prob.shape == (64, 128) and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert seen == [(32, 64)]
    model.save(tmp_path / "m")
    assert np.array_equal(load_method(tmp_path / "m", device="cpu").predict_proba(image), prob)
    with pytest.raises(ConfigError, match="scale"):
        SegmenterConfig.build("small", {"scale": 2})


def test_resample_keeps_means_and_label_values():
    from artseg.tiling import resample, scaled_shape

    rng = np.random.default_rng(0)
    image = rng.random((60, 80)).astype(np.float32)
    assert resample(image, scaled_shape(image.shape, 0.5)).shape == (30, 40)
    # a 1-px fibre between the sample points of a plain 4x bilinear downscale: antialiasing keeps it, and its mass
    fibre = np.zeros((64, 64), np.float32)
    fibre[:, 3::8] = 1.0
    small = resample(fibre, (16, 16))
    assert small.min() > 0 and small.sum() * 16 == pytest.approx(fibre.sum(), rel=0.02)
    labels = np.where(rng.random((60, 80)) < 0.5, -1.0, 1.0).astype(np.float32)
    assert set(np.unique(resample(labels, (30, 40), nearest=True))) <= {-1.0, 1.0}
    assert resample(image, image.shape) is not None and np.array_equal(resample(image, image.shape), image)


def test_a_network_that_predicted_before_training_trains_as_a_fresh_one(tmp_path):
    """The predictor leaves the network in eval mode; Lightning keeps that mode at the start of `fit`, so a
    network timed on a val image before training (the budget's val-pass reserve) trained with frozen
    batch-norm statistics. Same seed, same data: the same training whether or not it predicted first."""
    from artseg.methods.segmenter.base import Segmenter
    from artseg.run import seed_everything

    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(6):
        image, mask = rng.random((64, 64), dtype=np.float32), np.zeros((64, 64), np.float32)
        y, x = rng.integers(4, 48, size=2)
        mask[y : y + 10, x : x + 10] = 1
        image[mask > 0] *= 0.2
        images.append(image)
        masks.append(mask)
    cfg = SegmenterConfig.build("small", {**TINY, "max_epochs": "2", "tta": "none", "val_size": "32"})
    results = []
    for predict_first in (False, True):
        seed_everything(0)
        segmenter = Segmenter(cfg)
        if predict_first:
            segmenter.predict_proba(images[0])
            assert not segmenter.net.training
        run = RunOptions(device="cpu", seed=0, work_dir=tmp_path / str(predict_first), progress=False, precision="32")
        segmenter.train(images, masks, images[:2], masks[:2], run)
        bn = next(m for m in segmenter.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert bn.num_batches_tracked > 0  # batch-norm statistics were updated, i.e. it trained in train mode
        results.append((run.history[0]["best_val_loss"], bn.running_mean.clone()))
    assert results[0][0] == results[1][0] and torch.allclose(results[0][1], results[1][1])
