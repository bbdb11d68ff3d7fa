"""benchmarks/gpu_suite.sh keeps working without a GPU: its `--dry-run` runs every step's code on the CPU at
tiny sizes, records to a file of its own (never docs/benchmarks.md), and a missing optional peer is skipped."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
DOC = ROOT / "docs" / "benchmarks.md"


@pytest.fixture
def torch_threads_restored():
    """The in-process tests run benchmark code that sets torch's thread count (one on a dry run): put it back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _sections(text: str) -> dict[str, str]:
    """Section title -> body of a benchmarks markdown file."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _table(body: str) -> list[list[str]]:
    """Cells of the first markdown table of a section body (header and separator left out)."""
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[1:]]


@pytest.mark.slow
def test_dry_run_runs_every_step_and_records_elsewhere(tmp_path):
    record = tmp_path / "benchmarks.md"
    before = hashlib.sha256(DOC.read_bytes()).hexdigest()
    env = {**os.environ, "PYTHON": sys.executable, "ARTSEG_BENCHMARKS_DOC": str(record),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "failed steps: none" in out and "FAILED" not in out, out[-3000:]
    assert hashlib.sha256(DOC.read_bytes()).hexdigest() == before  # the project's record is untouched

    sections = _sections(record.read_text())
    titles = list(sections)
    assert len(titles) == 6, titles
    for title, body in sections.items():
        assert "- date: " in body and "- machine: " in body, title
        assert "- command: `python benchmarks/gpu_suite.py scorecam,predict,train-speed,smoke,quality --dry-run" in body
        assert body in out  # printed as well as appended: stdout is all that comes back from a GPU machine

    scorecam = _table(sections[titles[0]])
    names = [r[1] for r in scorecam]
    assert names.count("grad-cam (batch 16, as shipped)") == 2  # two sizes, as 224² and 1024² on the GPU
    assert any(n.startswith("ours bf16") for n in names) and any(n.startswith("ours float32 top-") for n in names)
    for row in scorecam:
        if row[1].startswith(("ours bf16", "ours float32 top-")):
            assert 0.0 <= float(row[7]) <= 1.0  # IoU@0.5 to our float32 maps
        assert float(row[2]) > 0  # seconds per image

    predict = [r[0] for r in _table(next(b for t, b in sections.items() if t.startswith("GPU suite: predict")))]
    for model in ("unet small", "unet study", "scorecam-unet fast"):
        assert f"{model} MONAI sliding_window_inference (peer)" in predict
        assert any(r.startswith(f"{model} one ") and r.endswith("forward (reference)") for r in predict)
    plate = [r[0] for r in _table(next(b for t, b in sections.items() if t.startswith("GPU suite: plate run")))]
    assert sum(r.endswith("artseg predict end to end (in process)") for r in plate) == 3

    smoke = {r[0]: r[1] for r in _table(next(b for t, b in sections.items() if t.startswith("GPU suite: smoke")))}
    from artseg import methods

    assert set(smoke) == set(methods.names())
    assert all(status == "ok" or status.startswith("skipped: no ") for status in smoke.values()), smoke
    train_speed = _table(next(b for t, b in sections.items() if "training speed" in t))
    assert float(train_speed[0][3]) > 0  # images/s
    quality = _table(next(b for t, b in sections.items() if "study U-Net training, synthetic test split" in t))
    assert 0.0 <= float(quality[0][1]) <= 1.0  # pixel IoU


def test_missing_peers_are_skipped_not_fatal(tmp_path, monkeypatch, capsys, torch_threads_restored):
    """Without MONAI or grad-cam (not installed on a GPU machine unless prepared) their rows are skipped with a
    `skipped:` line and ours are still measured."""
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setitem(sys.modules, "monai", None)  # `import monai...` raises ImportError
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam.score_cam", None)
    monkeypatch.setenv("ARTSEG_BENCHMARKS_DOC", str(tmp_path / "b.md"))
    torch.set_num_threads(1)
    import gpu_suite
    import scorecam_speed
    from unet_speed import tiler_rows, untrained

    rows, notes = tiler_rows(untrained("unet", "small", gpu_suite.DRY_UNET), torch.device("cpu"), 48, 1)
    assert "skipped: MONAI row" in capsys.readouterr().out
    assert [r[0] for r in rows][0] == "artseg tiled" and rows[0][3] == 1.0  # ratios to the first row measured
    assert "MONAI" not in notes

    scorecam_speed.main(gpu_suite.SCORECAM_DRY)
    out = capsys.readouterr().out
    assert "skipped: grad-cam rows at 32px" in out
    table = _table(_sections((tmp_path / "b.md").read_text())["Score-CAM speed: ours vs pytorch-grad-cam "
                                                              "(benchmarks/scorecam_speed.py)"])
    assert table[0][1].startswith("ours float32") and table[0][3] == "1"
    assert all(r[4] == "" for r in table)  # no grad-cam maps to compare with


def test_a_failing_step_is_reported_and_the_rest_still_run(tmp_path, monkeypatch, capsys, torch_threads_restored):
    """Inside one process a failing step prints `FAILED:` and the next step still runs (exit 1 at the end); in the
    shell a step whose process fails is named in `FAILED:` and the suite exits 1."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("ARTSEG_BENCHMARKS_DOC", str(tmp_path / "b.md"))
    import gpu_suite

    monkeypatch.setattr(gpu_suite, "FAILURES", [])
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the dataset folder should be")
    assert gpu_suite.main(["quality,quality-data", "--dry-run", "--data", str(not_a_folder)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: quality: " in out and "FAILED: quality-data: " in out  # the second step ran after the first failed

    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), "--only", "scorecam"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHON": "false"})
    assert proc.returncode == 1
    assert "FAILED: scorecam: exit 1" in proc.stdout and "failed steps: scorecam" in proc.stdout
