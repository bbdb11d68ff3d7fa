"""The `tiny` experiment suite end to end: report numbers from the runs, caching, resume after a kill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from artseg.cli import main
from artseg.experiments.runner import prediction_done
from artseg.experiments.spec import Context, ExperimentError, Planner, load_experiment, plan_table


def _tables(report: str, heading: str) -> list[list[dict]]:
    """Markdown tables of the report section whose heading starts with `heading`, as row dicts."""
    section = report.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    tables, lines = [], section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, (c.strip() for c in lines[i].strip("|").split("|")))))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _evaluation(run: Path, model_key: str, data_id: str | None = None) -> dict:
    """The evaluation.json of a model's test predictions on a dataset (default: the primary one)."""
    if data_id is None:
        data_id = json.loads((run / "experiments" / "exp1.json").read_text())["data"]["primary"]["id"]
    return json.loads((run / "predictions" / model_key / f"{data_id}-test-mid" / "evaluation.json").read_text())


def _results(report: str) -> tuple[str, list[dict]]:
    """A report without its training times (wall clock differs between runs; the numbers must not)."""
    models = [{k: v for k, v in r.items() if k != "train s"} for r in _tables(report, "Models")[0]]
    return report.split("\n## Models", 1)[0], models


def _key(cell: str) -> str:
    return cell.strip("`")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """`artseg experiment all --preset tiny` once, in-process, on 16 synthetic 64 px images."""
    from artseg.synth import generate_dataset

    root = tmp_path_factory.mktemp("exp")
    data = generate_dataset(root / "d7", n_train=8, n_val=4, n_test=4, height=64, width=64, seed=0, progress=False)
    run = root / "run"
    rc = main(["experiment", "all", "--data", str(data), "--out", str(run), "--preset", "tiny", "--workers", "0", "--quiet"])
    assert rc == 0
    return data, run, (run / "report.md").read_text()


def test_report_tables_hold_the_evaluated_numbers(suite):
    data, run, report = suite
    assert (run / "report.html").read_text().count("data:image/png;base64,") >= 3  # figures embedded
    exp1 = _tables(report, "exp1")[0]
    assert {r["method"] for r in exp1} >= {"unet"}
    for row in exp1:
        ev = _evaluation(run, _key(row["model key"]))
        assert row["pixel IoU"] == f"{ev['pixel_iou']:.4f}"
        assert row["pixel F1"] == f"{ev['pixel_f1']:.4f}"
        assert row["object IoU"] == f"{ev['object_iou']:.4f}"
        config = json.loads((run / "models" / _key(row["model key"]) / "config.json").read_text())
        assert row["threshold"] == f"{config['threshold']:.4f}"
        assert ev["n_images"] == 4
    assert exp1[0]["study IoU"] == "0.8563"  # the study's number beside ours
    # exp4: one model per (size, draw) plus the full set; each row's numbers are its own evaluation's.
    every = _tables(report, "exp4")[-1]
    assert sorted(int(r["images"]) for r in every if r["method"] == "unet") == [2, 4, 8]
    keys = {_key(r["model key"]) for r in every}
    assert len(keys) == len(every)
    for row in every:
        assert row["pixel IoU"] == f"{_evaluation(run, _key(row['model key']))['pixel_iou']:.4f}"
    # Models are shared by key: exp1's U-Net is exp4's full-set U-Net and exp6's.
    full_unet = next(_key(r["model key"]) for r in every if r["draw"] == "full" and r["method"] == "unet")
    assert full_unet == next(_key(r["model key"]) for r in exp1 if r["method"] == "unet")
    # Annotation time: a U-Net on 2 images = 1 mask (6 min) + 1 label (4 s).
    assert next(r for r in every if r["images"] == "2")["annotation (min)"] == f"{(360 + 4) / 60:.1f}"
    # exp6: the second dataset is a generated lncap focal stack, scored on its middle plane.
    job = json.loads((run / "experiments" / "exp6.json").read_text())
    target = Path(job["data"]["target"]["root"])
    synth = json.loads((target / "synth.json").read_text())
    assert synth["look"] == "lncap" and synth["planes"] == 3
    t8 = _tables(report, "exp6")[0]
    for row in t8:
        ev = _evaluation(run, _key(row["model key"]), data_id=job["data"]["target"]["id"])
        assert row["pixel IoU"] == f"{ev['pixel_iou']:.4f}"
    assert (run / "figures" / "exp4_iou_vs_images.png").stat().st_size > 1000
    assert (run / "figures" / "exp4_iou_vs_annotation.png").stat().st_size > 1000


def _fits(monkeypatch, fail_on=()) -> list[str]:
    """Record every Method.fit call by method name; raise for the names in `fail_on`."""
    from artseg import methods

    calls: list[str] = []
    for name in methods.names():
        cls = methods.get(name)
        original = cls.fit.__func__

        def fit(klass, dataset, config, run, _orig=original, _name=name, **kwargs):
            calls.append(_name)
            if _name in fail_on:
                raise RuntimeError("simulated crash")
            return _orig(klass, dataset, config, run, **kwargs)

        monkeypatch.setattr(cls, "fit", classmethod(fit))
    return calls


def test_resuming_a_finished_run_trains_nothing(suite, monkeypatch):
    data, run, report = suite
    calls = _fits(monkeypatch, fail_on=set(__import__("artseg.methods").methods.names()))
    predicted = []
    import artseg.predict

    monkeypatch.setattr(artseg.predict, "predict_files", lambda *a, **k: predicted.append(a) or [])
    rc = main(["experiment", "all", "--data", str(data), "--out", str(run), "--preset", "tiny", "--workers", "0", "--quiet"])
    assert rc == 0 and calls == [] and predicted == []
    assert (run / "report.md").read_text() == report  # nothing retrained: even the training times are the same


def test_killed_run_continues_to_the_same_report(suite, monkeypatch, tmp_path):
    data, run, report = suite
    every = _tables(report, "exp4")[-1]
    subset_keys = [_key(r["model key"]) for r in every if r["draw"] != "full"]
    # A kill during the first model's save (weights written, no config.json), the second model never
    # started, and a prediction set cut off halfway (no completion marker, one file gone).
    (run / "models" / subset_keys[0] / "config.json").unlink()
    shutil.rmtree(run / "models" / subset_keys[1])
    pred = next((run / "predictions" / subset_keys[0]).iterdir())
    for name in ("_complete.json", "evaluation.json"):
        (pred / name).unlink()
    next(pred.glob("*_prob.tif")).unlink()
    # The restart crashes again on the U-Net: the run reports the failure and keeps what it has.
    calls = _fits(monkeypatch, fail_on={"unet"})
    rc = main(["experiment", "exp4", "--data", str(data), "--out", str(run), "--preset", "tiny", "--workers", "0", "--quiet"])
    assert rc == 1 and calls == ["unet", "unet"]
    assert "failed: RuntimeError: simulated crash" in (run / "report.md").read_text()
    monkeypatch.undo()
    calls = _fits(monkeypatch)
    rc = main(["experiment", "all", "--data", str(data), "--out", str(run), "--preset", "tiny", "--workers", "0", "--quiet"])
    assert rc == 0 and calls == ["unet", "unet"]
    assert prediction_done(pred)
    assert _results((run / "report.md").read_text()) == _results(report)


def test_dask_worker_gives_the_same_evaluation(suite, tmp_path):
    pytest.importorskip("distributed")
    data, run, report = suite
    exp1 = _tables(report, "exp1")[0]
    key = _key(next(r for r in exp1 if r["method"] == "unet")["model key"])
    before = _evaluation(run, key)
    pred = next(p for p in (run / "predictions" / key).iterdir() if p.name.startswith(before["data_id"]))
    shutil.rmtree(pred)
    rc = main(["experiment", "exp1", "--data", str(data), "--out", str(run), "--preset", "tiny", "--workers", "1", "--quiet"])
    assert rc == 0
    assert _evaluation(run, key) == before
    assert (run / "report.md").read_text().count(f"{before['pixel_iou']:.4f}") >= 1


def test_edited_config_is_a_different_model_and_errors_name_the_file(suite, tmp_path):
    data, run, _ = suite
    ctx = Context(exp_dir=tmp_path / "r", preset="tiny", data={"primary": data})
    default = plan_table(load_experiment("exp1", "tiny"), Planner(ctx))["rows"][0]["model"]
    edited = tmp_path / "my_exp1.toml"
    text = Path(load_experiment("exp1", "tiny")["config_file"]).read_text()
    edited.write_text(text.replace('methods = ["unet", "detector-unet"]', 'methods = ["unet"]')
                      + "\n[hyperparameters.unet]\nmax_epochs = 1\n")
    cfg = load_experiment("exp1", "tiny", edited)
    rows = plan_table(cfg, Planner(ctx))["rows"]
    assert [r["method"] for r in rows] == ["unet"] and rows[0]["model"] != default
    assert cfg["methods_file"].endswith("methods.toml")  # falls back to the package's method settings
    bad = tmp_path / "bad.toml"
    bad.write_text(text + "\n[hyperparameters.unet]\nno_such_field = 3\n")
    with pytest.raises(ExperimentError, match="no_such_field"):
        plan_table(load_experiment("exp1", "tiny", bad), Planner(ctx))
    with pytest.raises(ExperimentError, match="unknown preset"):
        load_experiment("exp1", "huge")
    assert main(["experiment", "exp1", "--data", str(data), "--out", str(tmp_path / "x"), "--config", str(bad),
                 "--preset", "tiny", "--workers", "0"]) == 2


def test_one_annotation_cost_model_for_experiments_and_benchmarks():
    from artseg.experiments import annotation_seconds
    from artseg.experiments.spec import SECONDS_PER_LABEL, SECONDS_PER_MASK

    n = {"artefact": 3, "clean": 5}
    # full supervision masks the artefact images only; every other kind labels each image once
    assert annotation_seconds("full", n) == 3 * SECONDS_PER_MASK + 5 * SECONDS_PER_LABEL
    assert annotation_seconds("weak", n) == annotation_seconds("clean-only", n) == 8 * SECONDS_PER_LABEL
    assert annotation_seconds("full", n, per_mask=60.0, per_label=1.0) == 185.0
