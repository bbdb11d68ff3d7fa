"""OME-aware reading: axes from the file's metadata (Z x C x Y x X works), channel=, pixel size kept."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from artseg.cli import main
from artseg.io import ImageReadError, read_pixel_size, read_raw, write_prob, write_tiff

RNG = np.random.default_rng(7)


def zcyx() -> np.ndarray:
    return RNG.integers(0, 60000, (5, 3, 24, 30)).astype(np.uint16)


def test_ome_zcyx_stack_reads_the_asked_plane_and_channel(tmp_path):
    stack = zcyx()
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "ZCYX"})
    np.testing.assert_array_equal(read_raw(path, plane=4, channel=1), stack[4, 1])
    np.testing.assert_array_equal(read_raw(path, channel=2), stack[2, 2])  # the middle plane by default
    with pytest.raises(ImageReadError, match=r"a\.ome\.tif: the image has 3 channels; choose one"):
        read_raw(path)
    with pytest.raises(ImageReadError, match=r"a\.ome\.tif: channel 3 out of range, the image has 3 channels"):
        read_raw(path, channel=3)
    with pytest.raises(ImageReadError, match=r"plane 5 out of range, the image has 5 planes"):
        read_raw(path, plane=5, channel=0)


def test_imagej_hyperstack_and_time_series(tmp_path):
    stack = zcyx()
    tifffile.imwrite(tmp_path / "h.tif", stack[None], imagej=True)  # TZCYX, T = 1
    np.testing.assert_array_equal(read_raw(tmp_path / "h.tif", plane=0, channel=2), stack[0, 2])
    # Channel-only (C x Y x X) files are no longer mistaken for focal stacks.
    tifffile.imwrite(tmp_path / "c.tif", stack[0], imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match="3 channels"):
        read_raw(tmp_path / "c.tif")
    with pytest.raises(ImageReadError, match="plane 1 requested but the image has a single plane"):
        read_raw(tmp_path / "c.tif", plane=1, channel=0)
    tifffile.imwrite(tmp_path / "t.tif", stack[:, :1], imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(ImageReadError, match="t.tif: a time series of 5 points"):
        read_raw(tmp_path / "t.tif")
    # A file that does not name its axes cannot give a channel.
    write_tiff(tmp_path / "plain.tif", stack[:, 0])
    with pytest.raises(ImageReadError, match="does not name its channel axis"):
        read_raw(tmp_path / "plain.tif", channel=0)


def test_pixel_size_is_read_and_written(tmp_path):
    tifffile.imwrite(tmp_path / "o.ome.tif", zcyx()[:, 0],
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.5, "PhysicalSizeXUnit": "µm"})
    assert read_pixel_size(tmp_path / "o.ome.tif") == pytest.approx((0.5, 0.65))
    tifffile.imwrite(tmp_path / "n.ome.tif", zcyx()[0, 0],
                     metadata={"axes": "YX", "PhysicalSizeX": 650, "PhysicalSizeY": 650,
                               "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"})
    assert read_pixel_size(tmp_path / "n.ome.tif") == pytest.approx((0.65, 0.65))
    write_tiff(tmp_path / "plain.tif", zcyx()[0, 0])
    assert read_pixel_size(tmp_path / "plain.tif") is None
    prob = RNG.random((24, 30)).astype(np.float32)
    write_prob(tmp_path / "p.tif", prob, pixel_size=(0.5, 0.65))
    assert read_pixel_size(tmp_path / "p.tif") == pytest.approx((0.5, 0.65), rel=1e-6)
    np.testing.assert_array_equal(read_raw(tmp_path / "p.tif"), prob)


def test_predict_cli_channel_and_pixel_size(tmp_path, capsys, tiny_unet_dir):
    from artseg.methods import load_method

    model_dir = tiny_unet_dir
    stack = zcyx()
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "s.ome.tif", stack, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--channel", "1",
                 "--quiet"]) == 0
    prob_file = tmp_path / "out" / "s.ome_prob.tif"
    method = load_method(model_dir, device="cpu")
    np.testing.assert_array_equal(read_raw(prob_file), method.predict_proba(method.normalisation.apply(stack[2, 1])))
    assert read_pixel_size(prob_file) == pytest.approx((0.65, 0.65), rel=1e-6)
    # Without --channel the multi-channel file is reported (one line), not guessed.
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--quiet"]) == 2  # an input error (README rule)
    assert "s.ome.tif: the image has 3 channels; choose one" in capsys.readouterr().err


def test_named_axes_of_arrays_and_imagej_micron(tmp_path):
    from artseg.io import to_plane

    yxs = RNG.integers(0, 255, (10, 12, 1)).astype(np.uint8)
    np.testing.assert_array_equal(to_plane(yxs, axes="YXS"), yxs[..., 0])  # one sample is plain gray
    xy = RNG.integers(0, 255, (12, 10)).astype(np.uint8)
    np.testing.assert_array_equal(to_plane(xy, axes="XY"), xy.T)  # axes in any order come out Y x X
    # Fiji's own calibration (ImageJ description unit=micron, resolution in pixels per micron).
    tifffile.imwrite(tmp_path / "fiji.tif", xy, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"unit": "micron"})
    assert read_pixel_size(tmp_path / "fiji.tif") == pytest.approx((0.325, 0.325), rel=1e-6)
