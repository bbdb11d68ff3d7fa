"""Export: onnxruntime and TorchScript give artseg's own probabilities; bioimage.io's own test passes the
package; methods that are not one network are refused in one line."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from conftest import save_tiny_unet

from artseg.cli import main
from artseg.methods import get, load_method


def save_unet(directory, **overrides):
    """An untrained tiny U-Net (real, if meaningless, maps) with non-trivial BatchNorm statistics."""
    model = load_method(save_tiny_unet(directory, **overrides), device="cpu")
    with torch.no_grad():  # non-zero BatchNorm statistics, so eval-mode BN is exercised for real
        for module in model.segmenter.net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.save(directory)


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    return save_unet(tmp_path_factory.mktemp("export") / "unet")


def images():
    rng = np.random.default_rng(3)
    # Non-square, neither side a multiple of 32, and one exactly a multiple: the padding path and the no-padding path.
    return [rng.random((45, 77), dtype=np.float32), rng.random((64, 40), dtype=np.float32)]


def test_onnx_matches_artseg_probabilities(unet_dir, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "unet.onnx"
    assert main(["export", str(unet_dir), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    method = load_method(unet_dir, device="cpu")
    for image in images():
        expected = method.predict_proba(image)
        got = session.run(None, {"image": image[None, None]})[0]
        assert got.shape == (1, 1, *image.shape)
        assert np.abs(got[0, 0] - expected).max() <= 1e-4
    # Batch axis is dynamic too.
    pair = np.stack([images()[0], images()[0][::-1].copy()])[:, None]
    got = session.run(None, {"image": pair})[0]
    assert np.abs(got[1, 0] - method.predict_proba(pair[1, 0])).max() <= 1e-4


def test_torchscript_matches_artseg_probabilities(unet_dir, tmp_path):
    out = tmp_path / "unet.pt"
    assert main(["export", str(unet_dir), "--format", "torchscript", "--out", str(out)]) == 0
    module = torch.jit.load(str(out))
    method = load_method(unet_dir, device="cpu")
    for image in images():
        with torch.inference_mode():
            got = module(torch.from_numpy(image)[None, None]).numpy()[0, 0]
        assert np.abs(got - method.predict_proba(image)).max() <= 1e-4


def test_bioimageio_package_passes_bioimageio_core_test(unet_dir, tmp_path):
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    out = tmp_path / "unet.bioimageio.zip"
    assert main(["export", str(unet_dir), "--format", "bioimageio", "--out", str(out),
                 "--cite-url", "https://example.org/thesis"]) == 0
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "test_input.npy", "test_output.npy", "README.md"} <= set(
        zipfile.ZipFile(out).namelist())
    summary = test_model(out)  # bioimage.io's own test: both weight formats reproduce the test output
    assert summary.status == "passed", summary.format()
    descr = load_model_description(out)
    # the small preset's quartile scaling: the percentiles, then the linear map, then the clip
    assert [p.id for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype"] == ["scale_range", "scale_linear", "clip"]
    steps = {p.id: p.kwargs for p in descr.inputs[0].preprocessing}
    n = load_method(unet_dir, device="cpu").normalisation
    assert (n.low, n.high) == (25.0, 75.0)
    assert (steps["scale_range"].min_percentile, steps["scale_range"].max_percentile) == (n.low, n.high)
    assert (steps["scale_linear"].gain, steps["scale_linear"].offset) == pytest.approx((n.gain, n.offset))
    assert [p.id for p in descr.outputs[0].postprocessing if p.id != "ensure_dtype"] == ["sigmoid"]
    assert "Artefact Segmentation in Brightfield Microscopy Images" in descr.cite[0].text
    assert str(descr.cite[0].url) == "https://example.org/thesis"
    assert str(descr.license) == "MIT"
    # The package's test output is artseg's own probability map of its test input.
    method = load_method(unet_dir, device="cpu")
    with zipfile.ZipFile(out) as z:
        z.extractall(tmp_path / "pkg")
    raw = np.load(tmp_path / "pkg" / "test_input.npy")[0, 0]
    expected = method.predict_proba(method.normalisation.apply(raw))
    assert np.abs(np.load(tmp_path / "pkg" / "test_output.npy")[0, 0] - expected).max() <= 1e-5


@pytest.mark.parametrize(("name", "reason"), [
    ("ae-ssim", "SSIM of the image and its autoencoder reconstruction"),
    ("patch-svdd", "memory bank"),
    ("scorecam", "one classifier pass per activation channel"),
    ("detector-unet", "box detector"),
])
def test_methods_that_are_not_one_network_are_refused(name, reason, tmp_path, capsys):
    cls = get(name)
    directory = cls(cls.config_class.build("small", {})).save(tmp_path / name)
    out = tmp_path / "x.onnx"
    assert main(["export", str(directory), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"artseg: error: {name} cannot be exported: ") and reason in err and "\n" not in err
    assert not out.exists()


def test_refined_model_is_refused_and_tta_is_exported_as_single_pass(tmp_path, capsys):
    refined = load_method(save_unet(tmp_path / "r"), device="cpu")
    refined.settings = refined.settings.replace(refine="superpixel")
    refined.save(tmp_path / "r")
    assert main(["export", str(tmp_path / "r"), "--format", "torchscript", "--out", str(tmp_path / "r.pt")]) == 2
    assert "refine='superpixel'" in capsys.readouterr().err
    assert not (tmp_path / "r.pt").exists()
    # A TTA model exports its single pass: equal to the same weights predicted without TTA.
    save_unet(tmp_path / "t", tta="d4")
    assert main(["export", str(tmp_path / "t"), "--format", "torchscript", "--out", str(tmp_path / "t.pt")]) == 0
    single = load_method(tmp_path / "t", device="cpu")
    single.settings = single.settings.replace(tta="none")
    image = images()[0]
    got = torch.jit.load(str(tmp_path / "t.pt"))(torch.from_numpy(image)[None, None]).detach().numpy()[0, 0]
    assert np.abs(got - single.predict_proba(image)).max() <= 1e-4
