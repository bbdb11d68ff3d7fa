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


def test_other_libraries_go_to_the_log_file_and_verbose_only(tmp_path, capsys, monkeypatch):
    """A library's log record and a warning raised outside artseg reach the log file, and stderr only under
    --verbose; a warning raised in artseg's own code is one `artseg: WARNING:` line either way."""
    import warnings

    from artseg import cli

    def noisy(args):
        logging.getLogger("tifffile").warning("incorrect StripByteCounts count")
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)  # raised here: not artseg's code
        # as if raised in artseg's code: the warning's file is one of artseg's modules
        exec(compile("warnings.warn('own words', stacklevel=1)", cli.__file__, "exec"), {"warnings": warnings})
        return 0

    monkeypatch.setitem(cli.COMMANDS, "synth", noisy)
    log_file = tmp_path / "run.log"
    root_handlers = logging.getLogger().handlers[:]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["--log-file", str(log_file), "synth", str(tmp_path / "s")]) == 0
        assert capsys.readouterr().err.splitlines() == ["artseg: WARNING: own words"]
        text = log_file.read_text()
        assert "WARNING tifffile: incorrect StripByteCounts count" in text
        assert "DeprecationWarning: a library's deprecation" in text and "own words" in text
        assert main(["--verbose", "synth", str(tmp_path / "s")]) == 0
        err = capsys.readouterr().err
        assert "artseg: WARNING: tifffile: incorrect StripByteCounts count" in err and "a library's deprecation" in err
    assert logging.getLogger().handlers == root_handlers  # the command's handlers are gone
