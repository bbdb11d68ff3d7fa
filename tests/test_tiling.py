import numpy as np
import pytest
import torch

from artseg.tiling import (
    choose_mode,
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
