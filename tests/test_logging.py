"""--verbose / --log-file: the `artseg` logger reaches stderr and the file for one command, then lets go."""

from __future__ import annotations

import logging

from conftest import save_tiny_unet

from artseg.cli import main


def test_verbose_and_log_file(tmp_path, capsys):
    model_dir = save_tiny_unet(tmp_path / "m", tta="d4")
    log_file = tmp_path / "run.log"
    argv = ["--verbose", "--log-file", str(log_file), "export", str(model_dir), "--format", "torchscript",
            "--out", str(tmp_path / "m.pt")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "artseg: WARNING: unet: exported without its d4 test-time augmentation" in err
    assert "artseg: INFO: exported unet to TorchScript" in err
    text = log_file.read_text()
    assert "DEBUG artseg: artseg --verbose --log-file" in text and "INFO artseg: exported unet to TorchScript" in text
    # Without --verbose only the warning reaches stderr; the handlers of the previous command are gone.
    assert main(["export", str(model_dir), "--format", "torchscript", "--out", str(tmp_path / "m2.pt")]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "INFO" not in err
    assert len(log_file.read_text()) == len(text)
    assert logging.getLogger("artseg").handlers == []
    # A failing command: one line on stderr, the reason in the log file.
    assert main(["--log-file", str(log_file), "export", str(tmp_path / "nope"), "--format", "onnx",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "failed: ModelFileError" in log_file.read_text()
