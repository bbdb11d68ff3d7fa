"""Image IO: round trips for every format and bit depth, planes, gray, normalisation, atomic writes."""

from __future__ import annotations

import os
import stat

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from skimage.color import rgb2gray

import artseg.io as aio
from artseg.io import (
    ImageReadError,
    Normalisation,
    find_images,
    read_image,
    read_mask,
    read_raw,
    write_mask,
    write_png,
    write_prob,
    write_tiff,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(tmp_path, dtype):
    a = RNG.integers(0, np.iinfo(dtype).max, (17, 23), dtype=dtype, endpoint=True)
    write_png(tmp_path / "a.png", a)
    b = read_raw(tmp_path / "a.png")
    assert b.dtype == dtype and np.array_equal(a, b)


def test_jpeg_round_trip_is_approximate(tmp_path):
    yy, xx = np.mgrid[:32, :48]
    a = (100 + 60 * np.sin(xx / 6.0) * np.cos(yy / 9.0)).astype(np.uint8)  # smooth: JPEG-friendly
    iio.imwrite(tmp_path / "a.jpg", a, quality=95)
    b = read_raw(tmp_path / "a.jpg")
    assert b.shape == a.shape
    assert np.abs(b.astype(float) - a).mean() < 2.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
def test_tiff_round_trip(tmp_path, dtype, suffix):
    if np.issubdtype(dtype, np.integer):
        a = RNG.integers(0, np.iinfo(dtype).max, (9, 13), dtype=dtype, endpoint=True)
    else:
        a = (RNG.random((9, 13)) * 1e3 - 5).astype(dtype)
    write_tiff(tmp_path / f"a{suffix}", a)
    b = read_raw(tmp_path / f"a{suffix}")
    assert b.dtype == dtype and np.array_equal(a, b)


def test_stack_plane_pick(tmp_path):
    stack = np.stack([np.full((6, 8), 10 * k, np.uint16) for k in range(5)])
    tifffile.imwrite(tmp_path / "s.tif", stack)
    assert np.all(read_raw(tmp_path / "s.tif") == 20)  # middle plane by default
    assert np.all(read_raw(tmp_path / "s.tif", plane=0) == 0)
    assert np.all(read_raw(tmp_path / "s.tif", plane=4) == 40)
    assert np.all(read_raw(tmp_path / "s.tif", plane=-1) == 40)
    for bad in (5, -6):
        with pytest.raises(ImageReadError, match=r"s\.tif: plane .* out of range, the image has 5 planes"):
            read_raw(tmp_path / "s.tif", plane=bad)
    # An even stack: the middle is n // 2.
    tifffile.imwrite(tmp_path / "e.tif", stack[:4], photometric="minisblack")
    assert np.all(read_raw(tmp_path / "e.tif") == 20)
    # Leading singleton axes (TZCYX with T = C = 1) are squeezed away.
    tifffile.imwrite(tmp_path / "t.tif", stack[None, :, None], imagej=True)
    assert read_raw(tmp_path / "t.tif").shape == (6, 8)
    # A single plane cannot give plane 1.
    write_tiff(tmp_path / "one.tif", stack[0])
    with pytest.raises(ImageReadError, match="one.tif: plane 1 requested but the image has a single plane"):
        read_raw(tmp_path / "one.tif", plane=1)
    # read_image passes the plane through.
    assert read_image(tmp_path / "s.tif", plane=1).dtype == np.float32


def test_rgb_and_rgba_to_gray(tmp_path):
    rgb = RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    gray = read_raw(tmp_path / "rgb.png")
    assert gray.shape == (10, 12)
    np.testing.assert_allclose(gray, rgb2gray(rgb) * 255, atol=1e-3)
    rgba = np.dstack([rgb, np.full((10, 12), 255, np.uint8)])
    write_png(tmp_path / "rgba.png", rgba)
    np.testing.assert_allclose(read_raw(tmp_path / "rgba.png"), gray, atol=1e-4)
    # An RGB focal stack: the middle plane, then gray.
    tifffile.imwrite(tmp_path / "rgbs.tif", np.stack([rgb // 2, rgb, rgb // 3]), photometric="rgb")
    np.testing.assert_allclose(read_raw(tmp_path / "rgbs.tif"), gray, atol=1e-3)


def test_gray_alpha_png(tmp_path):
    la = np.dstack([RNG.integers(0, 256, (5, 7), dtype=np.uint8), np.full((5, 7), 255, np.uint8)])
    iio.imwrite(tmp_path / "la.png", la)
    assert iio.imread(tmp_path / "la.png").shape == (5, 7, 2)
    assert np.array_equal(read_raw(tmp_path / "la.png"), la[..., 0])


def test_normalisation_maps_percentiles_to_zero_and_one():
    image = RNG.permutation(np.arange(1000, dtype=np.uint16)).reshape(25, 40) * 7 + 300
    norm = Normalisation(low=5.0, high=95.0)
    out = norm.apply(image)
    lo, hi = np.percentile(image.astype(np.float32), [5.0, 95.0])
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) == pytest.approx(np.mean(image <= lo), abs=1e-3)
    assert np.mean(out == 1.0) == pytest.approx(np.mean(image >= hi), abs=1e-3)
    mid = (image > lo) & (image < hi)
    np.testing.assert_allclose(out[mid], (image[mid] - lo) / (hi - lo), rtol=1e-5)
    unclipped = Normalisation(5.0, 95.0, clip=False).apply(image)
    assert unclipped.min() < 0 and unclipped.max() > 1
    # Bit depth does not matter: the same picture in 8 bits and scaled to 16 bits.
    img8 = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    np.testing.assert_allclose(Normalisation().apply(img8), Normalisation().apply(img8.astype(np.uint16) * 257), atol=1e-5)
    # A constant image does not divide by zero.
    assert np.array_equal(Normalisation().apply(np.full((4, 4), 9.0)), np.zeros((4, 4), np.float32))


def _field_with_dark_debris(debris_share: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured 16-bit-like field, and the same field with a dark disc over `debris_share` of it."""
    rng = np.random.default_rng(5)
    field = 30000 + 2000 * rng.standard_normal((200, 200))
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 60) ** 2 + (xx - 80) ** 2 <= debris_share * 200 * 200 / np.pi
    return field, np.where(disc, 12000.0, field)


def test_robust_scaling_keeps_the_rest_of_the_field_where_dark_debris_would_move_it():
    clean, debris = _field_with_dark_debris(0.03)
    untouched = debris == clean
    for scaling, most in ((aio.ROBUST_SCALING, 0.01), (aio.PERCENTILE_SCALING, None)):
        shift = np.abs(scaling.apply(debris)[untouched] - scaling.apply(clean)[untouched])
        if most is None:  # the percentile scaling: the 1st percentile now sits in the debris
            assert np.median(shift) > 0.05
        else:
            assert np.median(shift) < most
    out = aio.ROBUST_SCALING.apply(clean)
    q25, q75 = np.percentile(clean, [25, 75])
    # the quartiles' midpoint -> 0.5 and five interquartile ranges either side -> 0 / 1
    assert np.median(out) == pytest.approx(0.5, abs=0.01)
    inside = np.abs(clean - (q25 + q75) / 2) < 4 * (q75 - q25)
    np.testing.assert_allclose(out[inside], 0.5 + (clean[inside] - (q25 + q75) / 2) / (10 * (q75 - q25)), atol=1e-5)


def test_scaling_of_a_flat_background_falls_back_to_the_full_range():
    # An 8-bit image whose quartiles are equal: dividing by their difference would erase the artefact.
    image = np.full((20, 20), 100, np.uint8)
    image[:3, :3] = 10
    out = aio.ROBUST_SCALING.apply(image)
    assert out[0, 0] < out[10, 10]
    assert (out[0, 0], out[10, 10]) == pytest.approx((0.45, 0.55))


def test_a_saved_normalisation_without_gain_and_offset_is_the_percentile_scaling():
    # config.json files written before gain/offset existed hold only low, high and clip
    assert Normalisation(**{"low": 1.0, "high": 99.8, "clip": True}) == aio.PERCENTILE_SCALING
    assert Normalisation(**aio.ROBUST_SCALING.to_dict()) == aio.ROBUST_SCALING
    for bad in ({"gain": 0.0}, {"gain": "1"}, {"offset": float("nan")}):
        with pytest.raises(ValueError, match="gain"):
            Normalisation(**bad)


def test_read_image_normalises_and_rejects_nan(tmp_path):
    a = RNG.integers(100, 4000, (20, 20), dtype=np.uint16)
    write_tiff(tmp_path / "a.tif", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), Normalisation().apply(a))
    bad = np.ones((4, 4), np.float32)
    bad[1, 1] = np.nan
    write_tiff(tmp_path / "nan.tif", bad)
    with pytest.raises(ImageReadError, match="nan.tif: image contains NaN"):
        read_image(tmp_path / "nan.tif")


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="nope.tif: no such file"):
        read_raw(tmp_path / "nope.tif")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(ImageReadError, match="x.bmp: unsupported file type"):
        read_raw(tmp_path / "x.bmp")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="broken.png: cannot read image") as info:
        read_raw(tmp_path / "broken.png")
    assert "\n" not in str(info.value)


def test_prob_and_mask_writers(tmp_path):
    write_prob(tmp_path / "p.tif", np.array([[-0.5, 0.25], [0.75, 2.0]]))
    p = read_raw(tmp_path / "p.tif")
    assert p.dtype == np.float32 and np.array_equal(p, np.array([[0, 0.25], [0.75, 1]], np.float32))
    m = np.array([[True, False], [False, True]])
    write_mask(tmp_path / "m.png", m)
    raw = read_raw(tmp_path / "m.png")
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    assert np.array_equal(read_mask(tmp_path / "m.png"), m)
    # Written files get ordinary permissions, not mkstemp's private 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "m.png").st_mode) == 0o666 & ~umask


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.png"

    def failing_imwrite(path, array, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89PNG half")  # a partial file, then the writer dies
        raise RuntimeError("disk full")

    monkeypatch.setattr(iio, "imwrite", failing_imwrite)
    with pytest.raises(RuntimeError, match="disk full"):
        write_png(target, np.zeros((4, 4), np.uint8))
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()
    # An existing file survives a failed overwrite untouched.
    write_png(target, np.full((4, 4), 7, np.uint8))
    with pytest.raises(KeyboardInterrupt):
        with aio.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert np.all(read_raw(target) == 7)
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]


def test_find_images(tmp_path):
    for name in ("b.tif", "a.png", "c.JPG", "d.txt", "e.tiff"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.tif").write_bytes(b"")
    names = [p.name for p in find_images([tmp_path])]
    assert names == ["a.png", "b.tif", "c.JPG", "e.tiff"]  # sorted, non-images and subfolders skipped
    assert [p.name for p in find_images([str(tmp_path / "*.tif*")])] == ["b.tif", "e.tiff"]
    assert [p.name for p in find_images([str(tmp_path / "**" / "*.tif")])] == ["b.tif", "f.tif"]
    # Explicit files (even missing ones, reported when read), de-duplicated, order kept.
    got = find_images([tmp_path / "e.tiff", tmp_path, tmp_path / "missing.tif"])
    assert [p.name for p in got] == ["e.tiff", "a.png", "b.tif", "c.JPG", "missing.tif"]
