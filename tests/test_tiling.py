import numpy as np
import pytest
import torch

from artseg.tiling import (
    choose_mode,
    dihedral_mean,
    predict_auto,
    predict_tiled,
    predict_whole,
    tile_starts,
    torch_predictor,
)


def identity(batch):
    return batch


@pytest.mark.parametrize("shape", [(1080, 1080), (37, 1500), (2156, 2556), (5, 5)])
@pytest.mark.parametrize("tile,overlap", [(64, 0.25), (1024, 0.25), (256, 0.5)])
def test_identity_model_reproduces_input_exactly(shape, tile, overlap):
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    assert np.array_equal(predict_tiled(identity, image, tile, overlap, batch_size=3), image)


@pytest.mark.parametrize("shape", [(1080, 1080), (37, 1500), (5, 5)])
def test_whole_image_mode_identity(shape):
    image = np.random.default_rng(2).random(shape, dtype=np.float32)
    assert np.array_equal(predict_whole(identity, image), image)


def test_tiles_cover_and_stay_inside():
    for length in (5, 64, 65, 1080, 2556):
        starts = tile_starts(length, 64, 0.25)
        assert starts[0] == 0 and starts[-1] == max(0, length - 64)
        assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))


def test_overlaps_are_averaged():
    calls = []

    def position_fn(batch):
        calls.append(len(batch))
        return np.stack([np.full_like(b, float(len(calls))) for b in batch])

    image = np.zeros((10, 14), dtype=np.float32)
    out = predict_tiled(position_fn, image, tile=8, overlap=0.5, batch_size=1)
    # x starts 0,4,6 ; y starts 0,2 -> 6 tiles with values 1..6 ; pixel (0,0) only tile 1
    assert out[0, 0] == 1.0
    assert out[9, 13] == 6.0
    assert out[0, 5] == pytest.approx((1 + 2) / 2)
    assert out[0, 6] == pytest.approx((1 + 2 + 3) / 3)


def test_auto_mode_choice():
    assert choose_mode((1080, 1080), 1024, True, 2048**2) == "whole"
    assert choose_mode((1080, 1080), 1024, False, 2048**2) == "tiled"
    assert choose_mode((10000, 10000), 1024, True, 2048**2) == "tiled"


def test_conv_net_tiled_matches_whole_on_interior():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    fn = torch_predictor(net, torch.device("cpu"))
    image = np.random.default_rng(3).random((100, 130), dtype=np.float32)
    whole = predict_auto(fn, image, 64, True, mode="whole")
    tiled = predict_auto(fn, image, 64, True, mode="tiled", overlap=0.5)
    assert whole.shape == tiled.shape == image.shape
    # away from tile borders the 3x3 conv sees identical context in both modes
    assert np.allclose(whole[40:60, 40:60], tiled[40:60, 40:60], atol=1e-6)


@pytest.mark.parametrize("tta", ["none", "flips", "d4"])
def test_tta_of_an_equivariant_model_is_the_model(tta):
    image = np.random.default_rng(0).random((37, 50), dtype=np.float32)
    out = dihedral_mean(lambda im: im * 2, image, tta)  # pixel-wise: commutes with every flip/transpose
    assert out.shape == (37, 50) and out.dtype == np.float32
    np.testing.assert_allclose(out, image * 2, rtol=1e-6)


def test_tta_averages_the_views_mapped_back():
    image = np.random.default_rng(1).random((6, 9), dtype=np.float32)
    ramp = lambda im: np.cumsum(im, axis=1)  # noqa: E731  (not flip-equivariant: direction matters)
    expected = (ramp(image) + ramp(image[:, ::-1])[:, ::-1] + ramp(image[::-1])[::-1]
                + ramp(image[::-1, ::-1])[::-1, ::-1]) / 4
    np.testing.assert_allclose(dihedral_mean(ramp, image, "flips"), expected, rtol=1e-5)
    d4 = dihedral_mean(ramp, image, "d4")  # the transposed half sums along the other axis
    transposed = dihedral_mean(lambda im: ramp(im.T).T, image, "flips")
    np.testing.assert_allclose(d4, (expected + transposed) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        dihedral_mean(ramp, image, "rot45")


def _reference_tiled(fn, image, tile, overlap, keep=None):
    """Full-size accumulators, one window at a time: what the streamed, batched tiler must reproduce."""
    h, w = image.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for y in ys:
        for x in xs:
            count[y : y + tile, x : x + tile] += 1
            if keep is None or keep(y, x):
                total[y : y + tile, x : x + tile] += fn(image[None, y : y + tile, x : x + tile])[0]
    return (total / count).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 25, 100])
def test_batches_span_rows_of_windows_with_the_same_map(batch_size):
    """A 512-px image in 128-px windows has 5 per row: a batch of 8 takes windows from two rows."""
    sizes = []

    def fn(batch):  # per window, position-dependent and nonlinear
        sizes.append(len(batch))
        return np.sin(batch * 3.0) + batch.mean(axis=(1, 2), keepdims=True)

    image = np.random.default_rng(4).random((512, 512), dtype=np.float32)
    out = predict_tiled(fn, image, 128, 0.25, batch_size=batch_size)
    assert sizes == [min(batch_size, 25 - i) for i in range(0, 25, batch_size)]  # 25 windows, full batches
    np.testing.assert_allclose(out, _reference_tiled(fn, image, 128, 0.25), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_windows_left_out_across_whole_rows(batch_size):
    """`keep` may skip every window of several rows: their row starts must still be flushed in turn."""
    image = np.random.default_rng(5).random((300, 200), dtype=np.float32)
    keep = lambda y, x: y in (0, 192) or (y, x) == (96, 48)  # noqa: E731 - rows 48 and 144 have no window
    out = predict_tiled(lambda b: b + 1.0, image, 64, 0.25, batch_size=batch_size, keep=keep)
    np.testing.assert_allclose(out, _reference_tiled(lambda b: b + 1.0, image, 64, 0.25, keep), rtol=1e-6)
    assert out[70, 10] == 0.0  # a pixel no kept window covers
