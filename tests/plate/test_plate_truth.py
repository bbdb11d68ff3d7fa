"""evaluate --record-in -> MODEL/truth_evaluation.json -> predict carries it -> the plate report's accuracy block."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_blob_dataset, save_tiny_unet
from plate_helpers import make_plate

from artseg import layout
from artseg.cli import main
from artseg.io import read_mask, write_png
from artseg.methods import load_method
from artseg.plate.report import truth_html
from artseg.truth_record import TruthRecordError, read_record, run_block

# the untrained tiny net maps every pixel near 0.047: this threshold marks a few % of them, different per image
THRESHOLD = "0.0475"


def _artseg(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _digest(model: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (layout.weights_path(model), layout.config_path(model))}


def _score_rows(page: str, kind: str) -> dict[str, dict[str, float]]:
    """The report's score table of truth `kind` as numbers: data-score -> value, low, high."""
    block = page.split(f'data-truth="{kind}"', 1)[1].split("</div>", 1)[0]
    rows = {}
    for attrs in re.findall(r"<tr (data-score=[^>]*)>", block):
        values = dict(re.findall(r'data-(\w+)="([^"]*)"', attrs))
        score = values.pop("score")
        rows[score] = {k: float(v) for k, v in values.items()}
    return rows


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Two untrained models; the truth (blobs with dense masks and scribbles) predicted by model `a`."""
    import torch

    tmp = tmp_path_factory.mktemp("truth")
    torch.manual_seed(0)  # the same untrained weights every time: the same (imperfect, non-zero) scores
    # the percentile scaling: THRESHOLD is set for the untrained net's maps of images scaled that way
    models = {name: save_tiny_unet(tmp / name, scaling="percentile") for name in ("a", "b")}
    truth = make_blob_dataset(tmp / "truth", n_per_split=(2, 2, 2))
    for mask in sorted(layout.masks_dir(truth).glob("*.png"))[::2]:  # scribbles on three images
        dense = read_mask(mask)
        scribble = np.zeros(dense.shape, np.uint8)
        scribble[::3] = np.where(dense[::3], 2, 1)  # every third row painted with its true class
        write_png(layout.scribbles_dir(truth) / mask.name, scribble)
    plate = make_plate(tmp / "PLATE_A" / "Images", [(2, 5), (3, 7)], fields=1)[0].parent
    return {"tmp": tmp, **models, "truth": truth, "plate": plate}


def _predict(capsys, model, inputs, out, *more) -> None:
    code, _, err = _artseg(capsys, "predict", model, inputs, "--out", out, "--quiet", "--threshold", THRESHOLD, *more)
    assert code == 0, err


def test_evaluate_records_and_the_plate_report_shows_it(chain, capsys, tmp_path):
    a, b = chain["a"], chain["b"]
    before = _digest(a)
    truth_pred = tmp_path / "truth_pred"
    _predict(capsys, a, layout.images_dir(chain["truth"]), truth_pred)
    code, out, err = _artseg(capsys, "evaluate", "--data", chain["truth"], "--pred", truth_pred, "--split", "all",
                             "--record-in", a, "--json", tmp_path / "masks.json", "--quiet")
    assert code == 0, err
    assert f"recorded in {layout.truth_evaluation_path(a)}" in out
    code, _, err = _artseg(capsys, "evaluate", "--data", chain["truth"], "--pred", truth_pred, "--split", "all",
                           "--truth", "scribbles", "--record-in", a, "--json", tmp_path / "scribbles.json", "--quiet")
    assert code == 0, err
    results = {kind: json.loads((tmp_path / f"{kind}.json").read_text()) for kind in ("masks", "scribbles")}
    assert results["masks"]["n_images"] == 6 and results["scribbles"]["n_images"] == 3
    assert 0 < results["masks"]["pixel_iou"] < 1  # a real, imperfect score, so equality below means something

    record = read_record(a)  # one entry per truth kind: the scribble one did not replace the dense one
    assert set(record) == {"masks", "scribbles"}
    for kind, result in results.items():
        entry = record[kind]
        assert entry["verdict"] == result["verdict"] and entry["n_images"] == result["n_images"]
        assert entry["intervals"] == result["intervals"] and entry["truth"] == kind
        assert entry["scores"]["pixel_iou"] == result["pixel_iou"] and entry["split"] == "all"
        assert entry["dataset"] == str(chain["truth"].resolve()) and not entry["synthetic"]
        assert entry["predictions"] == str(truth_pred.resolve()) and entry["settings"]["threshold"] == float(THRESHOLD)
    assert _digest(a) == before  # weights and config.json untouched
    assert load_method(a, device="cpu").name == "unet"

    run = tmp_path / "run_a"
    _predict(capsys, a, chain["plate"], run)
    carried = json.loads(layout.prediction_record_path(run).read_text())
    assert carried["model_dir"] == str(a.resolve())
    assert carried["truth_evaluation"]["evaluations"] == record and carried["truth_evaluation"]["problem"] is None
    page = layout.report_html_path(run).read_text()
    assert "Accuracy on the lab's own truth" in page and 'id="truth-none"' not in page
    for kind, result in results.items():
        assert html.escape(result["verdict"]) in page
        shown = _score_rows(page, kind)
        scored = [k for k in ("pixel_iou", "pixel_f1", "object_iou", "pixel_precision", "pixel_recall")
                  if result[k] is not None]
        assert list(shown) == scored  # no object IoU on scribbles
        for key in scored:
            ci = result["intervals"].get(key)
            assert shown[key] == {"value": result[key], **({"low": ci[0], "high": ci[1]} if ci else {})}, key
    assert page.index('data-truth="masks"') < page.index('data-truth="scribbles"')
    assert "upper bound" in page and "other prediction settings" not in page

    # the same model at its own threshold: the scores were not measured on these masks, and the page says so
    other = tmp_path / "run_default"
    code, _, err = _artseg(capsys, "predict", a, chain["plate"], "--out", other, "--quiet")
    assert code == 0, err
    assert "threshold 0.0475 (this run 0.5)" in layout.report_html_path(other).read_text()

    # a model nobody evaluated: the caveat and the command that records an evaluation
    run_b = tmp_path / "run_b"
    _predict(capsys, b, chain["plate"], run_b)
    page_b = layout.report_html_path(run_b).read_text()
    assert 'id="truth-none"' in page_b and "No evaluation on hand-drawn truth recorded for this model" in page_b
    assert f"--record-in {b.resolve()}" in page_b and 'data-score=' not in page_b
    assert json.loads(layout.prediction_record_path(run_b).read_text())["truth_evaluation"]["evaluations"] == {}

    # scores of model a's predictions are refused for model b, before any scoring, and b gets no record
    code, _, err = _artseg(capsys, "evaluate", "--data", chain["truth"], "--pred", truth_pred, "--split", "all",
                           "--record-in", b, "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert f"{layout.prediction_record_path(truth_pred)}: predictions of the model in {a.resolve()}" in err
    assert not layout.truth_evaluation_path(b).exists()


def test_a_second_recording_waits_for_the_first(chain, capsys, tmp_path):
    """A writer holding the record's lock makes `evaluate --record-in` wait, then both entries stay."""
    import fcntl
    import threading

    a = chain["a"]
    truth_pred = tmp_path / "truth_pred"
    _predict(capsys, a, layout.images_dir(chain["truth"]), truth_pred)
    layout.truth_evaluation_path(a).unlink(missing_ok=True)
    codes = []
    with open(layout.truth_evaluation_lock_path(a), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process in the middle of its read-merge-write
        writer = threading.Thread(target=lambda: codes.append(main(
            ["evaluate", "--data", str(chain["truth"]), "--pred", str(truth_pred), "--split", "all",
             "--record-in", str(a), "--quiet"])))
        writer.start()
        writer.join(timeout=3)
        assert writer.is_alive() and not layout.truth_evaluation_path(a).exists()  # waiting, nothing written
    writer.join(timeout=60)
    assert codes == [0] and set(read_record(a)) == {"masks"}


def test_unreadable_record_warns_and_the_run_goes_on(chain, capsys, tmp_path):
    model = save_tiny_unet(tmp_path / "broken")
    path = layout.truth_evaluation_path(model)
    path.write_text("{not json")
    run = tmp_path / "run"
    code, out, err = _artseg(capsys, "predict", model, chain["plate"], "--out", run, "--quiet")
    assert code == 0 and "wrote 2 predictions" in out
    warning = [line for line in err.splitlines() if str(path) in line]
    assert len(warning) == 1 and "unreadable" in warning[0] and "shows no accuracy" in warning[0]
    page = layout.report_html_path(run).read_text()
    assert html.escape(str(path)) in page and 'id="truth-none"' in page
    assert load_method(model, device="cpu").name == "unet"  # loading never reads the record


@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "must hold a JSON object, found list"),
    ('{"schema": 9, "evaluations": {}}', "not a truth evaluation record of schema 1"),
    ('{"schema": 1, "evaluations": {"guesses": {}}}', "found 'guesses'"),
    ('{"schema": 1, "evaluations": {"masks": {"truth": "masks", "verdict": "v", "n_images": 3, '
     '"scores": {"pixel_iou": 1.5}, "intervals": {}}}}', "score that is not a number in [0, 1]"),
    ('{"schema": 1, "evaluations": {"masks": {"truth": "masks", "verdict": "v", "n_images": 3, '
     '"scores": {"pixel_iou": 0.5}, "intervals": {"pixel_iou": [0.1]}}}}', "not [low, high] pairs"),
])
def test_bad_record_is_one_line_naming_the_file(tmp_path, content, problem):
    path = layout.truth_evaluation_path(tmp_path)
    path.write_text(content)
    with pytest.raises(TruthRecordError) as info:
        read_record(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_training_data_caveat_and_retrained_model_makes_the_record_stale(chain, capsys, tmp_path):
    model = save_tiny_unet(tmp_path / "m")
    config = json.loads(layout.config_path(model).read_text())
    config["provenance"] = {"data": {"root": str(chain["truth"])}}  # as if trained on the truth folder itself
    layout.config_path(model).write_text(json.dumps(config))
    truth_pred = tmp_path / "truth_pred"
    _predict(capsys, model, layout.images_dir(chain["truth"]), truth_pred)
    code, _, err = _artseg(capsys, "evaluate", "--data", chain["truth"], "--pred", truth_pred, "--split", "all",
                           "--record-in", model, "--quiet", "--resamples", "50")
    assert code == 0, err
    entry = read_record(model)["masks"]
    assert entry["training_data"] is True
    page = truth_html({"truth_evaluation": run_block(model, None), **entry["settings"]})  # a run at these settings
    assert "in the dataset the model was trained on" in page and "other prediction settings" not in page
    config["provenance"] = {"utc": "2030-01-01T00:00:00+00:00"}  # what `artseg train --out` into the folder leaves
    layout.config_path(model).write_text(json.dumps(config))
    block = run_block(model, "2030-01-01T00:00:00+00:00")
    assert block["evaluations"] == {} and "the masks evaluation is of the model trained at None" in block["problem"]
    # and the old predictions cannot be recorded for the retrained model
    code, _, err = _artseg(capsys, "evaluate", "--data", chain["truth"], "--pred", truth_pred, "--split", "all",
                           "--record-in", model, "--quiet")
    assert code == 2 and "predictions of the model trained at None" in err and "predict the truth images again" in err
