"""Grad-CAM: equal to pytorch-grad-cam's GradCAM (with our upsampling), the CAM of a pooled linear head,
and cheap (no gradient reaches the weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_scorecam import _HalfPixelUpsample, small_net

from artseg.cam import GradCAM
from artseg.nn.classifier import TinyCNN


def test_equals_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM as Reference
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, target = small_net()
    x = torch.rand(3, 1, 40, 48, generator=torch.Generator().manual_seed(2))
    ours = GradCAM(model, target).explain(x)
    assert not any(p.grad is not None for p in model.parameters())  # the backward stopped at the layer
    with pytest.MonkeyPatch.context() as mp:  # grad-cam resizes with OpenCV (half-pixel centres) as ours
        mp.setattr(torch.nn, "UpsamplingBilinear2d", _HalfPixelUpsample)
        ref_cam = Reference(model, [target])
        ref = ref_cam(x, [ClassifierOutputTarget(0)] * 3)
        ref_cam.activations_and_grads.release()
    maps = ours.maps.numpy()
    assert maps.shape == ref.shape == (3, 40, 48)
    assert all(m.max() > 0 for m in maps)  # non-trivial maps: the comparison means something
    assert np.abs(maps - ref).max() <= 1e-4


def test_pooled_linear_head_gives_the_class_activation_map():
    """Global average pooling + one linear layer: the pooled gradients are the head's weights / (h*w)."""
    torch.manual_seed(0)
    net = TinyCNN(width=4, depth=2)
    net.train()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    res = GradCAM(net, net.stages[-1], relu=False).explain(x)
    h, w = res.activations.shape[-2:]
    assert torch.allclose(res.weights * h * w, net.head.weight.expand(2, -1), atol=1e-6)
    cam = torch.einsum("k,bkhw->bhw", net.head.weight[0], res.activations)
    up = torch.nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    assert torch.allclose(res.maps, (up - lo) / (hi - lo), atol=1e-5)
    assert net.training  # the caller's mode is restored (eval was used inside)


def test_relu_empties_a_map_without_positive_evidence_and_signed_keeps_its_ranking():
    torch.manual_seed(0)
    net = TinyCNN(width=4, depth=2).eval()
    with torch.no_grad():
        net.head.weight.abs_().neg_()  # non-negative (ReLU) activations all argue against the class
    net.requires_grad_(False)  # frozen weights: the map must still be computed
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(4))
    assert not GradCAM(net, net.stages[-1]).explain(x).maps.any()
    signed = GradCAM(net, net.stages[-1], relu=False).explain(x).maps
    assert signed.max() == 1 and signed.min() == 0


def test_bad_input_is_one_line_error():
    model, target = small_net()
    with pytest.raises(ValueError, match="expected a"):
        GradCAM(model, target)(torch.zeros(1, 8, 8))
