"""Grad-CAM (Selvaraju et al., ICCV 2017): one forward and one partial backward pass per batch.

Definition (the conventions of `artseg.cam.scorecam`, so that the two maps are interchangeable):

1. `A = f_l(X)`: activations of `target_layer` (B, K, h, w), taken by a forward hook that hands the
   rest of the network a detached copy which requires grad: the backward pass then stops at the
   layer (no gradient for the earlier layers or any weight, so it costs about one forward of the head),
   and a later in-place op cannot change the captured maps.
2. `y` = the class score: the one logit of a binary classifier, else the logit of `target_class`
   (default: the class predicted for the image). Raw logits.
3. `alpha_k = mean_{h,w} dy/dA_k` (the paper's global-average-pooled gradients).
4. `L = ReLU(sum_k alpha_k A_k)` at feature resolution, bilinear upsampling (`align_corners=False`) to
   the input size, min-max normalisation to [0, 1]; a constant map is returned as all zeros.
   `relu=False` skips the ReLU: the map then ranks every cell by its evidence for the class even where
   all of it is negative (an image the classifier calls clean has an all-zero Grad-CAM, and a gate that
   keeps "the region above the threshold" would drop every candidate of it).

For a network that ends in global average pooling and one linear layer (the ResNets of
`artseg.nn.classifier`), `alpha_k` is that layer's weight over h*w, so the map is the original CAM
(Zhou et al., CVPR 2016): exact, not an approximation of Score-CAM, but a different saliency definition.
Its cost is about 2-3 forward passes per batch against Score-CAM's one per channel (K = 128 for the
`small` classifier); measured as the pseudo-label gate in benchmarks/pseudo_labels.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from artseg.cam.scorecam import normalise_maps, upsample


@dataclass
class GradCAMResult:
    """Maps and the quantities behind them (kept for diagnostics and tests)."""

    maps: Tensor  # (B, H, W) float32 in [0, 1]
    weights: Tensor  # (B, K) pooled gradients
    logits: Tensor  # model output for the input (B, ...)
    activations: Tensor  # (B, K, h, w) target-layer activations


class GradCAM:
    """Grad-CAM saliency maps for `model` at `target_layer` (see the module docstring)."""

    def __init__(self, model: nn.Module, target_layer: nn.Module, target_class: int | None = None, relu: bool = True):
        self.model = model
        self.relu = relu
        self.target_layer = target_layer
        self.target_class = target_class

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) input -> (B, H, W) float32 saliency maps in [0, 1] on the input's device."""
        return self.explain(x).maps

    def explain(self, x: Tensor) -> GradCAMResult:
        """Maps plus pooled gradients, logits and activations."""
        if x.ndim != 4:
            raise ValueError(f"GradCAM: expected a (B, C, H, W) input, got shape {tuple(x.shape)}")
        captured: list[Tensor] = []

        def hook(_module, _inputs, output):
            if not isinstance(output, Tensor):
                return None
            leaf = output.detach().to(torch.float32, copy=True).requires_grad_(True)
            captured.append(leaf)
            return leaf.to(output.dtype)  # the rest of the network runs from the leaf

        was_training = self.model.training
        self.model.eval()  # batch-norm statistics must not depend on the batch
        handle = self.target_layer.register_forward_hook(hook)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                logits = self.model(x.detach().clone().float())
                if len(captured) != 1 or captured[0].ndim != 4:
                    raise ValueError("GradCAM: target_layer must run once per forward and output a (B, K, h, w) tensor")
                acts = captured[0]
                (grads,) = torch.autograd.grad(self._scores(logits).sum(), acts)
        finally:
            handle.remove()
            self.model.train(was_training)
        acts, logits = acts.detach(), logits.detach()
        weights = grads.mean(dim=(2, 3))
        cam = torch.einsum("bk,bkhw->bhw", weights, acts)
        cam = torch.relu(cam) if self.relu else cam
        maps = normalise_maps(upsample(cam[:, None], (x.shape[-2], x.shape[-1]))[:, 0])
        return GradCAMResult(maps=maps, weights=weights, logits=logits, activations=acts)

    def _scores(self, logits: Tensor) -> Tensor:
        """(B,) class scores: the one logit, or that of `target_class` / the predicted class."""
        flat = logits.reshape(logits.shape[0], -1)
        if flat.shape[1] == 1:
            return flat[:, 0]
        if self.target_class is not None:
            return flat[:, self.target_class]
        return flat.gather(1, flat.argmax(dim=1, keepdim=True))[:, 0]
