"""Small objects in the loss (SegmenterConfig.small_object_px, artseg.methods.segmenter.base.small_object_weights)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from artseg.config import ConfigError
from artseg.methods.segmenter.base import IGNORE, SegmenterConfig, segmentation_loss, small_object_weights


def _target() -> torch.Tensor:
    """Batch of two 32 px masks: a 4 px speck and a 100 px square in the first, a 9 px square touching an
    IGNORE band in the second (8-connected: the two diagonal pixels at (20, 20) and (21, 21) are one object)."""
    t = torch.zeros(2, 1, 32, 32)
    t[0, 0, 2:4, 2:4] = 1
    t[0, 0, 10:20, 10:20] = 1
    t[0, 0, 25, 25] = t[0, 0, 26, 26] = 1
    t[1, 0, 5:8, 5:8] = 1
    t[1, 0, 0, :] = IGNORE
    return t


def test_objects_below_the_size_weigh_as_much_as_one_of_that_size():
    t = _target()
    w = small_object_weights(t, 36)
    assert w[0, 0, 2, 2] == 9.0  # 4 px -> 36 / 4
    assert w[0, 0, 15, 15] == 1.0  # 100 px: at or above the size, weight 1
    assert w[0, 0, 25, 25] == w[0, 0, 26, 26] == 18.0  # diagonal neighbours are one 2 px object
    assert w[1, 0, 6, 6] == 4.0  # 9 px in the second image, labelled on its own
    assert (w[t <= 0.5] == 1).all()  # background and ignored pixels keep weight 1
    # each small object's weights add up to the size asked for
    assert float(w[0, 0, 2:4, 2:4].sum()) == 36.0 and float(w[1, 0, 5:8, 5:8].sum()) == 36.0


def test_weighted_loss_scales_the_small_objects_gradient_and_leaves_the_rest():
    t = _target()
    logits = torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    grads = {}
    for px in (0, 36):
        x = logits.clone().requires_grad_(True)
        segmentation_loss("bce", px)(x, t).backward()
        grads[px] = x.grad
    assert torch.allclose(grads[36][0, 0, 2:4, 2:4], 9 * grads[0][0, 0, 2:4, 2:4])
    assert torch.allclose(grads[36][0, 0, 10:20, 10:20], grads[0][0, 0, 10:20, 10:20])
    assert torch.allclose(grads[36][0, 0, 30, :], grads[0][0, 0, 30, :])  # background
    assert (grads[36][1, 0, 0, :] == 0).all()  # IGNORE stays out of the loss
    # without the option the loss is the plain mean BCE over valid pixels, as before
    valid = t >= 0
    plain = F.binary_cross_entropy_with_logits(logits[valid], t[valid])
    assert torch.allclose(segmentation_loss("bce")(logits, t), plain)
    assert segmentation_loss("bce+dice", 36)(logits, t) > segmentation_loss("bce+dice")(logits, t)


def test_small_object_px_is_checked():
    with pytest.raises(ConfigError, match="small_object_px"):
        SegmenterConfig.build("small", {"small_object_px": "-5"}).validate()
    assert SegmenterConfig.build("small", {"small_object_px": "256"}).small_object_px == 256
    assert np.isclose(float(small_object_weights(torch.zeros(1, 1, 8, 8), 256).mean()), 1.0)
