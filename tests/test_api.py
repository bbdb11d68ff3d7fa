"""The one-line Python API: arrays and files give what `artseg predict` gives; objects are 8-connected."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

import artseg
from artseg import layout
from artseg.cli import main
from artseg.io import ImageReadError, read_mask


def test_import_artseg_stays_light():
    code = ("import sys, artseg; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules)); "
            "print(artseg.load_model.__module__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    # Neither numpy nor torch on `import artseg`; the API resolves on first use, torch only when a model loads.
    assert out == ["[]", "artseg.api False"]


def test_one_load_model_name_per_return_type(tiny_unet_dir):
    import artseg.methods

    assert isinstance(artseg.load_model(tiny_unet_dir, device="cpu"), artseg.ArtefactModel)
    assert isinstance(artseg.methods.load_method(tiny_unet_dir, device="cpu"), artseg.methods.Method)
    # the registry's old name fails with the new one rather than silently aliasing a second return type
    with pytest.raises(AttributeError, match="artseg.methods.load_method"):
        artseg.methods.load_model  # noqa: B018


def test_segment_array_equals_segment_file_and_predict(tiny_unet_dir, tmp_path):
    rng = np.random.default_rng(0)
    raw = (20000 + 3000 * rng.standard_normal((45, 70))).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raw)
    model = artseg.load_model(tiny_unet_dir, device="cpu")
    # the untrained net's masks are empty at its own threshold: cut at the median, so masks and objects have content
    cut = float(np.median(model.segment(raw).prob))
    from_array = model.segment(raw, threshold=cut)
    from_file = model.segment(tmp_path / "a.tif", threshold=cut)
    # what the API promises to equal: the files `artseg predict` writes (not the method it wraps)
    run = tmp_path / "run"
    assert main(["predict", str(tiny_unet_dir), str(tmp_path / "a.tif"), "--out", str(run), "--device", "cpu",
                 "--quiet", "--no-report", "--outputs", "prob,mask,objects", "--threshold", repr(cut)]) == 0
    prob, mask = tifffile.imread(layout.prob_path(run, "a")), read_mask(layout.mask_path(run, "a"))
    objects = tifffile.imread(layout.objects_path(run, "a"))
    assert mask.any() and not mask.all() and objects.max() >= 1
    for result in (from_array, from_file):
        assert result.prob.dtype == np.float32 and result.prob.shape == raw.shape
        np.testing.assert_array_equal(result.prob, prob)
        np.testing.assert_array_equal(result.mask, mask)
        np.testing.assert_array_equal(result.objects, objects)
        assert result.objects.dtype == np.uint16
        assert result.artefact_fraction == pytest.approx(mask.mean())
        assert (result.objects > 0).sum() == mask.sum()
    # A threshold override re-cuts the same map.
    high = model.segment(raw, threshold=float(np.quantile(prob, 0.9)))
    assert high.mask.mean() == pytest.approx((prob >= np.quantile(prob, 0.9)).mean())
    with pytest.raises(ValueError, match="threshold must be in"):
        model.segment(raw, threshold=1.5)


def test_segment_stacks_planes_and_channels(tiny_unet_dir):
    rng = np.random.default_rng(1)
    zcyx = rng.integers(0, 4000, (3, 2, 40, 48)).astype(np.uint16)
    model = artseg.load_model(tiny_unet_dir, device="cpu")
    picked = model.segment(zcyx, plane=2, channel=1, axes="ZCYX").prob
    np.testing.assert_array_equal(picked, model.segment(zcyx[2, 1]).prob)
    # A planes x H x W stack without axes: the middle plane, as the CLI reads it.
    np.testing.assert_array_equal(model.segment(zcyx[:, 0]).prob, model.segment(zcyx[1, 0]).prob)
    with pytest.raises(ImageReadError, match="2 channels; choose one"):
        model.segment(zcyx, axes="ZCYX")
    with pytest.raises(ImageReadError, match="NaN"):
        model.segment(np.full((40, 48), np.nan, np.float32))


def test_label_objects_is_eight_connected():
    from artseg.api import label_objects

    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # one diagonal line
    mask[4:, 4:] = True  # a second object
    labels = label_objects(mask)
    assert labels.dtype == np.uint16 and labels.max() == 2
    assert len({labels[0, 0], labels[1, 1], labels[2, 2]}) == 1


def test_raw_array_to_method_predict_map_is_refused_by_name(tiny_unet_dir):
    import artseg.methods

    method = artseg.methods.load_method(tiny_unet_dir, device="cpu")
    raw = np.full((64, 64), 20000, dtype=np.uint16)
    raw[20:30, 20:30] = 900
    # the method level takes normalised images only: a raw camera array would give a silent map of ~1
    with pytest.raises(ValueError, match=r"unet: image values span \[900, 20000\], far outside \[0, 1\]"):
        method.predict_map(raw.astype(np.float32))
    # the same array through the API is normalised first and gives a map in [0, 1]
    prob = artseg.load_model(tiny_unet_dir, device="cpu").segment(raw).prob
    assert prob.shape == raw.shape and 0.0 <= prob.min() and prob.max() <= 1.0
    # a normalised image that was not clipped (hot pixels above the high percentile) is still accepted
    unclipped = method.normalisation.apply(raw.astype(np.float32)) * 3.0 - 1.0
    assert method.predict_map(unclipped).shape == raw.shape
