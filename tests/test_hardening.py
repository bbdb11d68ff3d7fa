"""The hardening corpus (issue 21): bad images, datasets, models and command-line values through the CLI.

Every case asserts the exit code (2 bad input, 1 environment; README "Command line"), exactly one
stderr line `artseg: error: ...` naming the file or option, and no half-written output. docs/hardening.md
reports the counts of this corpus and how to rerun it.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import make_blob_dataset, save_tiny_unet
from plate_helpers import artseg_env, run_artseg
from safetensors.torch import load_file, save_file

from artseg import layout
from artseg.cli import main as artseg_main
from artseg.config import ConfigError
from artseg.data import load_dataset
from artseg.io import write_png

BUDGET = ["--preset", "small", "--max-time", "0.05"]  # for a case of any method: at most 3 s of training per network


def main(argv: list[str]) -> int:
    """`artseg.cli.main`, refusing a `train` case without a time budget: a wrongly accepted value then costs
    seconds, not a study-preset training that hangs `make test` (issue 31)."""
    if "train" in argv and not {"--max-time", "-h"} & set(argv):
        raise AssertionError(f"a train case without --max-time: {argv}")
    return artseg_main(argv)


TINY_NET = ["--preset", "small", "--quiet", "--device", "cpu", "--precision", "32", "--set", "input_size=32",
            "--set", "base=4", "--set", "depth=2", "--set", "batch_size=4", "--set", "crops_per_image=1"]
# A value wrongly accepted must not turn a case into a long training run (later flags win).
TINY_TRAIN = [*TINY_NET, "--max-epochs", "1", "--max-time", "0.05"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tiny dataset, an untrained tiny U-Net and one good image, shared by the read-only cases."""
    root = tmp_path_factory.mktemp("corpus")
    make_blob_dataset(root / "data", n_per_split=(2, 2, 0), size=32)
    save_tiny_unet(root / "model", input_size=32)
    shutil.copy(root / "data" / "images" / "train_00.tif", root / "good.tif")
    return root


def one_error_line(capsys, code: int, rc: int, *names: str) -> str:
    """The command's stderr: one line `artseg: error: ...` naming each of `names`, and the expected code."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("artseg: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def no_partial_files(folder: Path) -> bool:
    return not folder.exists() or not any(p.name.endswith(".part") for p in folder.rglob("*"))


# --- command-line values -----------------------------------------------------------------------
TRAIN_VALUES = [
    (["--max-time", "-1"], "--max-time"),
    (["--max-time", "0"], "--max-time"),
    (["--max-epochs", "0"], "--max-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--input-size", "1001"], "1001"),
    (["--set", "tta=bogus"], "tta"),
    (["--set", "loss=bogus"], "loss"),
    (["--set", "scheduler=bogus"], "scheduler"),
    (["--set", "lr=-1"], "lr"),
    (["--set", "lr=nan"], "lr"),
    (["--set", "lr=abc"], "lr"),
    (["--set", "batch_size=0"], "batch_size"),
    (["--set", "nonsense=1"], "nonsense"),
    (["--set", "no-equals-sign"], "--set"),
    (["--device", "cuda:7"], "--device"),
    (["--device", "tpu9"], "--device"),
    (["--device", "bogus"], "--device"),
    (["--preset", "huge"], "huge"),
]


@pytest.mark.parametrize("extra,name", TRAIN_VALUES, ids=[" ".join(a) for a, _ in TRAIN_VALUES])
def test_bad_train_value_is_one_line_and_nothing_written(corpus, tmp_path, capsys, extra, name):
    out = tmp_path / "model"
    rc = main(["train", "unet", "--data", str(corpus / "data"), "--out", str(out), *TINY_TRAIN, *extra])
    one_error_line(capsys, 2, rc, name)
    assert not layout.is_model_dir(out) and not (out / layout.WEIGHTS_FILE).exists()


@pytest.mark.parametrize("method", ["padim", "patch-svdd", "scorecam", "ae-ssim", "scorecam-unet", "detector-unet"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_negative_or_non_finite_hyper_parameter_refused_for_every_method(corpus, tmp_path, capsys, method, value):
    import dataclasses

    from artseg.methods import get

    cls = get(method)
    numeric = next(f.name for f in dataclasses.fields(cls.config_class) if f.type in ("float", float))
    rc = main(["train", method, "--data", str(corpus / "data"), "--out", str(tmp_path / "m"), "--quiet", *BUDGET,
               "--device", "cpu", "--set", f"{numeric}={value}"])
    one_error_line(capsys, 2, rc, numeric)


def test_out_that_is_a_file_or_below_a_file(corpus, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        rc = main(["train", "unet", "--data", str(corpus / "data"), "--out", str(out), *TINY_TRAIN])
        one_error_line(capsys, 2, rc, "--out", out)
    assert afile.read_text() == "x"


def _refuse_replace_into(monkeypatch, folder: Path, err: int, allowed: tuple[str, ...] = ()) -> list[str]:
    """Make the atomic write's last step, the rename into `folder` (of any file not `allowed`), fail with
    `err`: root cannot bypass an injected error, unlike permission bits. Returns the names refused."""
    real, refused = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).resolve().is_relative_to(folder.resolve()) and Path(dst).name not in allowed:
            refused.append(Path(dst).name)
            raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return refused


WRITE_ERRORS = {"read-only-fs": errno.EROFS, "permission": errno.EACCES, "disk-full": errno.ENOSPC}


@pytest.mark.parametrize("err", [errno.EROFS], ids=["read-only-fs"])  # the other errors: same path, checked for predict
def test_train_write_failure_is_one_line_and_no_half_written_model(corpus, tmp_path, capsys, monkeypatch, err):
    """The model's files are written last, each atomically: a failure there is one line (exit 1, the
    environment failed) naming the file, and the folder holds no model and no temporary."""
    out = tmp_path / "model"
    refused = _refuse_replace_into(monkeypatch, out, err)
    rc = main(["train", "unet", "--data", str(corpus / "data"), "--out", str(out), *TINY_TRAIN])
    one_error_line(capsys, 1, rc, out / layout.WEIGHTS_FILE, os.strerror(err))
    assert refused == [layout.WEIGHTS_FILE]  # the first file failed: config.json never written
    assert not (out / layout.WEIGHTS_FILE).exists() and not (out / layout.CONFIG_FILE).exists()
    assert not layout.is_model_dir(out) and no_partial_files(out)


@pytest.mark.parametrize("err", WRITE_ERRORS.values(), ids=list(WRITE_ERRORS))
@pytest.mark.parametrize("first", [True, False], ids=["run-settings", "mid-run"])
def test_predict_write_failure_is_one_line_and_no_half_written_output(corpus, tmp_path, capsys, monkeypatch, err, first):
    """The run's first write (run_settings.json) or an image's outputs (the masks, written while the run
    goes on) refused: the same exit 1 and one line naming the file, no output and no temporary left, and
    the manifest records nothing as done (a --resume redoes the image)."""
    run = tmp_path / "run"
    refused = _refuse_replace_into(monkeypatch, run, err, () if first else (layout.run_settings_path(run).name,))
    rc = main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(run), "--quiet"])
    line = one_error_line(capsys, 1, rc, run, os.strerror(err))
    assert refused and refused[0] in line and (refused[0] == layout.run_settings_path(run).name) == first
    assert not list(run.glob(f"*{layout.PROB_SUFFIX}")) and not list(run.glob(f"*{layout.MASK_SUFFIX}"))
    manifest = layout.manifest_path(run)
    assert no_partial_files(run) and (not manifest.exists() or not manifest.read_text().strip())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the injected failures above run as root)")
def test_out_not_writable(corpus, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    rc = main(["train", "unet", "--data", str(corpus / "data"), "--out", str(locked / "m"), *TINY_TRAIN])
    one_error_line(capsys, 2, rc, "--out")


SYNTH_VALUES = [(["--size", "0"], "--size"), (["--n-train", "-1"], "--n-train"), (["--planes", "0"], "--planes"),
                (["--height", "-5", "--width", "8"], "--height"), (["--size", "8", "--height", "8"], "--size")]


@pytest.mark.parametrize("extra,name", SYNTH_VALUES, ids=[" ".join(a) for a, _ in SYNTH_VALUES])
def test_bad_synth_value(tmp_path, capsys, extra, name):
    rc = main(["synth", str(tmp_path / "s"), "--n-train", "1", "--n-val", "0", "--n-test", "0", *extra])
    one_error_line(capsys, 2, rc, name)
    assert not (tmp_path / "s" / "images").exists()


PREDICT_VALUES = [(["--threshold", "5"], "--threshold"), (["--batch-size", "0"], "--batch-size"),
                  (["--device", "cuda:9"], "--device"), (["--qc-max-fraction", "-1"], "--qc-max-fraction")]


@pytest.mark.parametrize("extra,name", PREDICT_VALUES, ids=[" ".join(a) for a, _ in PREDICT_VALUES])
def test_bad_predict_value(corpus, tmp_path, capsys, extra, name):
    out = tmp_path / "run"
    rc = main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(out), "--quiet", *extra])
    one_error_line(capsys, 2, rc, name)
    assert not list(out.glob(f"*{layout.PROB_SUFFIX}")) and no_partial_files(out)


def test_debug_shows_the_traceback(corpus, tmp_path):
    with pytest.raises(ConfigError):
        main(["--debug", "train", "unet", "--data", str(corpus / "data"), "--out", str(tmp_path / "m"), *TINY_TRAIN,
              "--set", "tta=bogus"])


# --- datasets ----------------------------------------------------------------------------------
def _copy_data(corpus: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(corpus / "data", tmp_path / "data"))


def _labels(data: Path, rows: list[tuple[str, str]]) -> None:
    layout.labels_path(data).write_text("filename,label\n" + "".join(f"{f},{lab}\n" for f, lab in rows))


def _not_utf8(data: Path) -> str:
    layout.labels_path(data).write_bytes("filename,label\ntrain_00.tif,artéfact\n".encode("latin-1"))
    return layout.LABELS_FILE


def _traversal(data: Path) -> str:
    (data.parent / "secret.tif").write_bytes((data / "images" / "train_00.tif").read_bytes())
    _labels(data, [("../../secret.tif", "clean"), ("train_01.tif", "clean")])
    return "../../secret.tif"


def _absolute(data: Path) -> str:
    target = data.parent / "abs.tif"
    shutil.copy(data / "images" / "train_00.tif", target)
    _labels(data, [(str(target), "clean"), ("train_01.tif", "clean")])
    return str(target)


def _nan_mask(data: Path) -> str:
    mask = data / "masks" / "train_01.png"  # train_01 is labelled clean: the loader reads its mask
    mask.unlink()
    tifffile.imwrite(mask.with_suffix(".tif"), np.full((32, 32), np.nan, dtype=np.float32))
    return "train_01.tif"


def _no_columns(data: Path) -> str:
    layout.labels_path(data).write_text("name;class\nx;y\n")
    return layout.LABELS_FILE


def _missing_labels(data: Path) -> str:
    layout.labels_path(data).unlink()
    return layout.LABELS_FILE


DATASETS = {"not-utf8": _not_utf8, "dotdot": _traversal, "absolute": _absolute,
            "nan-mask": _nan_mask, "no-columns": _no_columns, "missing-labels": _missing_labels}


@pytest.mark.parametrize("case", DATASETS)
def test_bad_dataset(corpus, tmp_path, capsys, case):
    data = _copy_data(corpus, tmp_path)
    name = DATASETS[case](data)
    out = tmp_path / "model"
    rc = main(["train", "unet", "--data", str(data), "--out", str(out), *TINY_TRAIN, "--max-epochs", "1"])
    one_error_line(capsys, 2, rc, name)
    assert not layout.is_model_dir(out)


def test_a_link_placed_in_images_is_followed(corpus, tmp_path):
    """A symbolic link inside images/ (how `artseg label` adds a plate's images) is read where it points;
    only the names in labels.csv are confined."""
    data = _copy_data(corpus, tmp_path)
    outside = data.parent / "plate" / "field.tif"
    outside.parent.mkdir()
    shutil.copy(data / "images" / "train_00.tif", outside)
    (data / "images" / "link.tif").symlink_to(outside.resolve())
    _labels(data, [("link.tif", "clean"), ("train_01.tif", "clean")])
    dataset = load_dataset(data)
    assert [s.image_path.name for s in dataset.samples] == ["link.tif", "train_01.tif"]
    assert dataset.samples[0].image_path.resolve() == outside.resolve()


def test_missing_and_forbidden_files_get_the_same_words(corpus, tmp_path, capsys):
    messages = []
    for name, exists in (("../../secret.tif", True), ("../../nothing.tif", False)):
        data = _copy_data(corpus, tmp_path / name.replace("/", "_"))
        if exists:
            shutil.copy(data / "images" / "train_00.tif", data.parent / "secret.tif")
        _labels(data, [(name, "clean"), ("train_01.tif", "clean")])
        rc = main(["train", "unet", "--data", str(data), "--out", str(tmp_path / "m"), *TINY_TRAIN])
        line = one_error_line(capsys, 2, rc, name)
        messages.append(line.replace(str(data), "DATA").replace(name, "NAME"))
    assert messages[0] == messages[1]


def test_image_without_a_row_is_reported(corpus, tmp_path, caplog):
    data = _copy_data(corpus, tmp_path)
    shutil.copy(data / "images" / "train_00.tif", data / "images" / "forgotten.tif")
    with caplog.at_level(logging.WARNING, logger="artseg"):
        dataset = load_dataset(data)
    assert "forgotten.tif" not in {s.image_path.name for s in dataset.samples}
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "forgotten.tif" in caplog.records[0].message


# --- images ------------------------------------------------------------------------------------
def _huge_tiff(folder: Path, side: int = 100000) -> Path:
    """An 8 KB TIFF whose header claims side x side pixels."""
    path = folder / "huge.tif"
    tifffile.imwrite(path, np.zeros((32, 32), dtype=np.uint16))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(side)
        tif.pages[0].tags["ImageLength"].overwrite(side)
    return path


def _huge_png(folder: Path) -> Path:
    """A PNG whose IHDR claims 100000 x 100000 pixels (CRC fixed, so decoders trust it)."""
    path = folder / "huge.png"
    write_png(path, np.zeros((16, 16), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 100000, 100000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _truncated(folder: Path) -> Path:
    path = folder / "cut.tif"
    tifffile.imwrite(path, np.ones((64, 64), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:300])
    return path


def _not_an_image(folder: Path) -> Path:
    path = folder / "text.tif"
    path.write_text("not a tiff")
    return path


def _nan_image(folder: Path) -> Path:
    path = folder / "nan.tif"
    tifffile.imwrite(path, np.full((32, 32), np.nan, dtype=np.float32))
    return path


IMAGES = {"huge-tiff-header": _huge_tiff, "huge-png-header": _huge_png, "truncated": _truncated,
          "not-an-image": _not_an_image, "nan-pixels": _nan_image}


@pytest.mark.parametrize("case", IMAGES)
def test_bad_image(corpus, tmp_path, capsys, case):
    path = IMAGES[case](tmp_path)
    out = tmp_path / "run"
    rc = main(["predict", str(corpus / "model"), str(path), "--out", str(out), "--quiet", "--no-report"])
    line = one_error_line(capsys, 2, rc, path)
    if case.startswith("huge"):
        assert "100000 x 100000" in line and "ARTSEG_MAX_PIXELS" in line
    assert not list(out.glob(f"*{layout.MASK_SUFFIX}")) and no_partial_files(out)


def test_malformed_tiff_header_is_one_stderr_line_in_a_real_process(corpus, tmp_path):
    """tifffile logs its own complaints about this header ("incorrect StripByteCounts count", "shaped series
    shape does not match page shape"; at 65000 x 65000, unlike 100000, it gets as far as building the
    series): in a real process, where no test harness captures the logging module, they reach the log
    file only, and stderr is the one error line."""
    path = _huge_tiff(tmp_path, 65000)
    log_file = tmp_path / "run.log"
    proc = run_artseg("--log-file", log_file, "predict", corpus / "model", path, "--out", tmp_path / "run", "--quiet",
                      "--no-report")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"artseg: error: {path}: declares 65000 x 65000 = 4225000000 pixels, above the limit of 268435456 "
        "(set ARTSEG_MAX_PIXELS to read larger images)"], proc.stderr
    assert "tifffile: " in log_file.read_text() and "StripByteCounts" in log_file.read_text()
    assert no_partial_files(tmp_path / "run")


def test_pixel_limit_is_configurable(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARTSEG_MAX_PIXELS", "100")
    rc = main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(tmp_path / "r"), "--quiet"])
    one_error_line(capsys, 2, rc, "good.tif", "32 x 32")
    monkeypatch.setenv("ARTSEG_MAX_PIXELS", "1024")
    assert main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(tmp_path / "r"), "--quiet"]) == 0


# --- model folders -----------------------------------------------------------------------------
def _edit_weights(model: Path, edit) -> str:
    state = load_file(str(model / layout.WEIGHTS_FILE))
    edit(state)
    save_file(state, str(model / layout.WEIGHTS_FILE))
    return layout.WEIGHTS_FILE


def _first_float(state: dict) -> str:
    return next(k for k, v in sorted(state.items()) if v.is_floating_point() and v.ndim > 1)


def _nan_weights(model):
    return _edit_weights(model, lambda s: s[_first_float(s)].fill_(float("nan")))


def _wrong_shape(model):
    def edit(s):
        k = _first_float(s)
        s[k] = s[k][:1].clone()
    return _edit_weights(model, edit)


def _missing_key(model):
    return _edit_weights(model, lambda s: s.pop(_first_float(s)))


def _extra_key(model):
    return _edit_weights(model, lambda s: s.__setitem__("stray.weight", s[_first_float(s)].clone()))


def _wrong_dtype(model):
    def edit(s):
        k = _first_float(s)
        s[k] = s[k].to(dtype=__import__("torch").int32)
    return _edit_weights(model, edit)


def _garbage_weights(model):
    (model / layout.WEIGHTS_FILE).write_bytes(b"\x80\x04pickled? no")
    return layout.WEIGHTS_FILE


def _edit_config(model: Path, edit) -> str:
    path = model / layout.CONFIG_FILE
    desc = json.loads(path.read_text())
    path.write_text(json.dumps(edit(desc)))
    return layout.CONFIG_FILE


def _set(key, value, inner=None):
    def edit(desc):
        (desc[inner] if inner else desc)[key] = value
        return desc
    return lambda model: _edit_config(model, edit)


def _not_object(model):
    return _edit_config(model, lambda d: [d])


def _invalid_json(model):
    (model / layout.CONFIG_FILE).write_text("{\"method\": ")
    return layout.CONFIG_FILE


MODELS = {
    "nan-weights": _nan_weights, "wrong-shape": _wrong_shape, "missing-key": _missing_key, "extra-key": _extra_key,
    "wrong-dtype": _wrong_dtype, "not-safetensors": _garbage_weights, "config-not-object": _not_object,
    "config-invalid-json": _invalid_json, "threshold-5": _set("threshold", 5), "threshold-text": _set("threshold", "a"),
    "hyper-wrong-type": _set("base", "four", "hyperparameters"), "hyper-negative": _set("lr", -1, "hyperparameters"),
    "normalisation-wrong": _set("normalisation", {"low": "x"}), "normalisation-list": _set("normalisation", [1]),
    "method-unknown": _set("method", "magic"), "method-list": _set("method", ["unet"]),
    "meta-not-object": _set("meta", 3),
}


@pytest.mark.parametrize("case", MODELS)
def test_bad_model_folder(corpus, tmp_path, capsys, case):
    model = Path(shutil.copytree(corpus / "model", tmp_path / "model"))
    name = MODELS[case](model)
    out = tmp_path / "run"
    rc = main(["predict", str(model), str(corpus / "good.tif"), "--out", str(out), "--quiet"])
    one_error_line(capsys, 2, rc, model / name)
    assert not list(out.glob(f"*{layout.PROB_SUFFIX}"))


def test_ensemble_cycle(corpus, tmp_path, capsys):
    from artseg.methods import load_method
    from artseg.methods.ensemble import EnsembleConfig, EnsembleMethod

    member = load_method(corpus / "model", device="cpu")
    one, two = tmp_path / "one", tmp_path / "two"
    for this, other in ((one, two), (two, one)):
        EnsembleMethod(EnsembleConfig(members=[str(corpus / "model")] * 2), members=[member, member]).save(this)
        _edit_config(this, lambda d, other=other: {**d, "extra": {"members": [str(other), str(corpus / "model")]}})
    rc = main(["predict", str(one), str(corpus / "good.tif"), "--out", str(tmp_path / "run"), "--quiet"])
    one_error_line(capsys, 2, rc, "ensemble member cycle")
    _edit_config(one, lambda d: {**d, "extra": {"members": [str(one), str(corpus / "model")]}})
    rc = main(["predict", str(one), str(corpus / "good.tif"), "--out", str(tmp_path / "run"), "--quiet"])
    one_error_line(capsys, 2, rc, one / layout.CONFIG_FILE)


# --- concurrency, provenance -------------------------------------------------------------------
def test_second_run_into_a_busy_folder_is_refused(corpus, tmp_path, capsys):
    from artseg.plate.manifest import RunLock

    run = tmp_path / "run"
    with RunLock(run):
        rc = main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(run), "--quiet"])
    one_error_line(capsys, 2, rc, run, "another artseg run")
    assert not list(run.glob(f"*{layout.PROB_SUFFIX}"))


def test_prediction_record_has_provenance(corpus, tmp_path):
    from artseg.provenance import data_fingerprint

    run = tmp_path / "run"
    assert main(["predict", str(corpus / "model"), str(corpus / "good.tif"), "--out", str(run), "--quiet",
                 "--no-report"]) == 0
    prov = json.loads(layout.prediction_record_path(run).read_text())["provenance"]
    assert prov["data"]["n_files"] == 1 and prov["data"]["sha256"] == data_fingerprint([corpus / "good.tif"], corpus)["sha256"]
    assert prov["device"] == "cpu" and prov["command"] == sys.argv


def test_fingerprint_tells_datasets_with_the_same_counts_apart(corpus, tmp_path):
    from artseg.provenance import data_fingerprint, dataset_files

    a, b = _copy_data(corpus, tmp_path / "a"), _copy_data(corpus, tmp_path / "b")
    tifffile.imwrite(b / "images" / "train_00.tif", np.ones((32, 32), dtype=np.uint16))  # same names, other pixels
    fa, fb = (data_fingerprint(dataset_files(d), d) for d in (a, b))
    assert fa["n_files"] == fb["n_files"] and fa["sha256"] != fb["sha256"]
    assert fa == data_fingerprint(dataset_files(a), a)


# --- interrupt ---------------------------------------------------------------------------------
SENTINEL = "-1.0"  # a `seconds` value no training writes: rows carrying it were not rewritten


def _log_rows(log: Path) -> list[dict]:
    with open(log, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_log(log: Path, rows: list[dict]) -> None:
    with open(log, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_training_resumes_where_it_stopped(corpus, tmp_path, capsys, sig):
    """Resume is not restart: the rows of the epochs the checkpoint holds survive byte for byte (a restart
    deletes the log), only the missing epochs are trained, and a row written after the checkpoint (a kill
    between the two) is dropped and its epoch trained again.

    The resumed weights are not compared with an uninterrupted run's: the data order (the DataLoader's
    generator) and the augmentation's random state restart from the seed at resume, as Lightning's
    checkpoint does not hold them, so the epochs after the interrupt see other batches; the promise
    (README, `seed_everything`) is repeatability of an uninterrupted CPU run.
    """
    import torch

    from artseg.provenance import data_fingerprint, dataset_files

    data, out = corpus / "data", tmp_path / "model"
    args = ["train", "unet", "--data", str(data), "--out", str(out), *TINY_NET]
    # never ends by itself (the tiny net early-stops after ~200 epochs in ~6 s): only the interrupt can stop it
    proc = subprocess.Popen([sys.executable, "-m", "artseg", *args, "--max-epochs", "100000", "--set", "patience_stop=100000"],
                            env=artseg_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: Ctrl-C handled even if this pytest worker ignores it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log, ckpt = out / "unet_log.csv", out / "unet_ckpt" / "last.ckpt"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:  # header + two epochs
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert err.strip().splitlines() == ["artseg: interrupted: resume with the same command plus --resume"]
    else:
        assert proc.returncode == -signal.SIGKILL, err
    assert ckpt.is_file() and not layout.is_model_dir(out)
    finished = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1  # epochs the checkpoint holds
    rows = _log_rows(log)
    assert finished >= 1 and len(rows) in (finished, finished + 1), (finished, len(rows))
    # Sentinels: the held epochs' rows marked, and a stray row past the checkpoint (killed after the row, before the checkpoint).
    held = [{**r, "seconds": SENTINEL} for r in rows[:finished]]
    _write_log(log, [*held, {**held[-1], "epoch": str(finished), "seconds": "-2.0"}])

    assert main([*args, "--max-epochs", str(finished + 2), "--max-time", "5", "--resume"]) == 0
    after = _log_rows(log)
    assert after[:finished] == held  # untouched: not rewritten, not retrained
    assert [int(r["epoch"]) for r in after] == list(range(finished + 2))  # only the two missing epochs, once each
    assert all(r["seconds"] not in (SENTINEL, "-2.0") for r in after[finished:])
    prov = json.loads((out / layout.CONFIG_FILE).read_text())["provenance"]
    assert prov["resumed"] is True and prov["epochs_run"] == {"unet": finished + 2} and prov["seed"] == 0
    assert prov["data"]["sha256"] == data_fingerprint(dataset_files(data), data)["sha256"]
    assert prov["max_epochs"] == finished + 2 and prov["device"] == "cpu" and prov["precision"] == "32-true"
    assert {"artseg", "torch", "numpy", "python", "platform", "utc", "command"} <= prov.keys()


def test_finite_weights_giving_nan_maps_are_an_error_not_an_empty_mask(corpus, tmp_path, capsys):
    import torch

    model = Path(shutil.copytree(corpus / "model", tmp_path / "model"))

    def overflow(state):  # finite, but +-1e30 products overflow to inf and inf - inf is NaN
        for key, value in state.items():
            if value.is_floating_point() and "running_var" not in key:
                state[key] = torch.where(torch.arange(value.numel()).reshape(value.shape) % 2 == 0, 1e30, -1e30)

    _edit_weights(model, overflow)
    out = tmp_path / "run"
    rc = main(["predict", str(model), str(corpus / "good.tif"), "--out", str(out), "--quiet", "--no-report"])
    one_error_line(capsys, 2, rc, corpus / "good.tif", "NaN or infinite probabilities")
    assert not list(out.glob(f"*{layout.MASK_SUFFIX}")) and no_partial_files(out)


@pytest.mark.parametrize("exc,code,words", [
    (PermissionError(13, "Permission denied", "/data/run"), 1, "/data/run: Permission denied"),
    (OSError(28, "No space left on device", "/data/run/x.tif"), 1, "/data/run/x.tif: No space left on device"),
    (FileNotFoundError(2, "No such file or directory", "/data/m"), 2, "/data/m: No such file or directory"),
    (FileNotFoundError("/run: no results table"), 2, "/run: no results table"),
    (ConfigError("hyper-parameter 'lr': -1 must be >= 0\nmore"), 2, "hyper-parameter 'lr': -1 must be >= 0"),
    (MemoryError(), 1, "out of memory"),
    (RuntimeError("CUDA error: device-side assert\nlong story"), 1, "RuntimeError: CUDA error: device-side assert (rerun with --debug"),
])
def test_exit_code_rule(exc, code, words):
    from artseg.errors import describe_failure

    got_code, line = describe_failure(exc)
    assert got_code == code and line.startswith(words) and "\n" not in line


def test_log_file_that_is_a_folder(corpus, tmp_path, capsys):
    rc = main(["--log-file", str(tmp_path), "predict", str(corpus / "model"), str(corpus / "good.tif"),
               "--out", str(tmp_path / "run"), "--quiet"])
    one_error_line(capsys, 2, rc, tmp_path)


@pytest.mark.parametrize("argv,name", [
    (["train", "unet", "--data", "d", "--out", "o", "--max-time", "abc"], "--max-time"),
    (["predikt", "m"], "predikt"),
    (["predict", "m", "x", "--out", "r", "--workers", "two"], "--workers"),
    (["train", "unet", "--data", "d", "--out", "o", "--max-time", "1", "--no-such-flag"], "--no-such-flag"),
])
def test_argparse_errors_are_one_line_too(capsys, argv, name):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    one_error_line(capsys, 2, stop.value.code, name, "-h")
