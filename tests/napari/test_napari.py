"""napari plugin, headless (Qt offscreen): npe2 validates the manifest; the dock widget segments the selected
layer as the Python API does and re-cuts artefacts with its slider; the reader and the sample data load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import artseg  # noqa: E402
from artseg.api import label_objects  # noqa: E402
from artseg.cli import main  # noqa: E402

MANIFEST = Path(artseg.__file__).parent / "napari" / "napari.yaml"


@pytest.fixture(scope="module")
def plugin():
    """The artseg manifest registered with npe2 (already so when artseg is pip-installed with its entry point)."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    if "artseg" not in manager._manifests:
        manager.register(PluginManifest.from_file(MANIFEST))
    return manager


@pytest.fixture
def viewer(plugin, qapp):
    """napari's viewer model: layers, dims, readers and samples as in the GUI, without the OpenGL canvas
    (Qt's offscreen platform has no OpenGL; the widget itself is a real Qt widget on a QApplication)."""
    from napari.components import ViewerModel

    return ViewerModel()


@pytest.fixture(scope="module")
def model_dir(tiny_unet_dir):
    return tiny_unet_dir


def test_npe2_validates_the_manifest_and_its_imports():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST), "--imports"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def test_widget_segments_the_selected_layer_and_slider_recuts(viewer, model_dir):
    from artseg.napari.widget import ArtsegWidget

    rng = np.random.default_rng(0)
    stack = rng.integers(1000, 40000, (3, 48, 64)).astype(np.uint16)
    viewer.add_image(stack, name="cells")
    viewer.dims.set_current_step(0, 2)  # the widget segments the plane on screen
    widget = ArtsegWidget(viewer)
    assert [layer.name for layer in widget.layer.choices] == ["cells"]
    widget.model_dir.value = model_dir
    widget.layer.value = viewer.layers["cells"]
    result = widget.segment()
    expected = artseg.load_model(model_dir).segment(stack[2])
    np.testing.assert_array_equal(viewer.layers["cells probability"].data, expected.prob)
    np.testing.assert_array_equal(viewer.layers["cells artefacts"].data, expected.objects)
    assert widget.threshold.value == pytest.approx(expected.threshold) and result.n_objects == expected.n_objects
    # The slider re-cuts the same map into new objects without running the model again.
    widget.threshold.value = float(np.quantile(expected.prob, 0.7))
    cut = widget.threshold.value  # the slider's 0.01 steps round the value
    np.testing.assert_array_equal(viewer.layers["cells artefacts"].data, label_objects(expected.prob >= cut))
    assert viewer.layers["cells artefacts"].data.max() > 0
    # Segmenting again updates the layers instead of stacking copies; result layers are not offered as inputs.
    widget.segment()
    assert len(viewer.layers) == 3 and [layer.name for layer in widget.layer.choices] == ["cells"]
    # A bad model folder is a status line, not an exception.
    widget.model_dir.value = model_dir.parent
    assert widget.segment() is None and "config.json missing" in widget.status.value


def test_reader_opens_a_prediction_folder(viewer, model_dir, tmp_path):
    import tifffile

    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "in" / f"{name}.tif", rng.integers(0, 60000, (40, 52)).astype(np.uint16))
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    layers = viewer.open(tmp_path / "pred", plugin="artseg")
    assert [layer.name for layer in layers] == ["a probability", "a artefacts", "b probability", "b artefacts"]
    expected = artseg.load_model(model_dir).segment(tmp_path / "in" / "b.tif")
    np.testing.assert_array_equal(viewer.layers["b probability"].data, expected.prob)
    np.testing.assert_array_equal(viewer.layers["b artefacts"].data > 0, expected.mask)
    from artseg.napari.reader import get_reader

    assert get_reader(str(tmp_path / "in")) is None  # not a prediction folder: left to other readers


def test_sample_data_is_the_synthetic_benchmark(viewer):
    viewer.open_sample("artseg", "synthetic")
    image, truth = viewer.layers["synthetic brightfield"], viewer.layers["true artefacts"]
    assert image.data.shape == truth.data.shape == (512, 512)
    assert truth.data.max() >= 1 and image.data.std() > 0


def test_slider_mask_is_predicts_mask_for_a_post_processing_model(viewer, tmp_path):
    """At any slider threshold the artefacts layer is the mask `artseg predict --threshold` writes: the
    model's post-processing (specks removed, holes filled) applies to the slider's cut too."""
    import imageio.v3 as iio
    import tifffile
    import torch
    from conftest import save_tiny_unet

    from artseg import layout
    from artseg.methods import load_method
    from artseg.napari.widget import ArtsegWidget
    from artseg.postprocess import PostProcess

    model_dir = save_tiny_unet(tmp_path / "m")
    method = load_method(model_dir, device="cpu")
    with torch.no_grad():  # spread the untrained net's logits: a map with structure for the slider's 0.01 steps
        method.segmenter.net.head.weight.mul_(300.0)
        method.segmenter.net.head.bias.zero_()
    method.settings = method.settings.replace(postprocess=PostProcess(min_object_px=6, fill_holes=True))
    method.save(model_dir)
    plane = (20000 + 3000 * np.random.default_rng(0).standard_normal((72, 96))).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    viewer.add_image(plane, name="plane")
    widget = ArtsegWidget(viewer)
    widget.model_dir.value = model_dir
    widget.layer.value = viewer.layers["plane"]
    prob = widget.segment().prob
    # a cut where the post-processing changes the raw mask, so that a slider ignoring it would be caught
    cuts = [c for c in np.round(np.quantile(prob, np.linspace(0.3, 0.95, 14)), 2)
            if not np.array_equal(PostProcess(6, True).apply(prob >= c), prob >= c)]
    assert cuts
    widget.threshold.value = float(cuts[len(cuts) // 2])
    cut = widget.threshold.value
    out = tmp_path / "pred"
    assert main(["predict", str(model_dir), str(tmp_path / "plane.tif"), "--threshold", str(cut), "--out", str(out),
                 "--quiet", "--no-report"]) == 0
    written = iio.imread(layout.mask_path(out, "plane")) > 0
    np.testing.assert_array_equal(viewer.layers["plane artefacts"].data > 0, written)
    np.testing.assert_array_equal(viewer.layers["plane artefacts"].data, label_objects(written))
