"""Patch SVDD's hierarchical encoder (Yi & Yoon 2020), written to be dense by construction.

`SubEncoder`: 8 valid 3x3 convolutions (the first with stride 2), LeakyReLU 0.1, tanh: a 32 px
patch becomes one D-vector. Applied to a whole image it yields the embedding of every 32 px patch
whose corner lies on the stride-2 grid, in one pass (valid convolutions are translation-equivariant).

`HierEncoder`: a 64 px patch is four 32 px sub-patches (2 x 2) embedded by the sub-encoder, joined
by a 2 x 2 convolution and a 1 x 1 convolution (LeakyReLU 0.1, tanh). On the dense stride-2 map of
32 px embeddings the four sub-patches of the 64 px patch at (y, x) sit at map offsets (0, 0),
(0, 16), (16, 0), (16, 16): the join is a 2 x 2 convolution with dilation 16. The same module
therefore embeds a single 64 px patch (output 1 x 1) and a whole image (dense stride-2 map) with
the same weights, so training and inference cannot disagree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUB_CHANNELS = (32, 64, 128, 128, 64, 32, 32)  # widths of the reference implementation's deep 32 px encoder


class SubEncoder(nn.Module):
    """(B,1,H,W) in [0,1] -> (B,D,(H-3)//2-13,...) : one D-vector per 32 px patch, stride 2."""

    patch = 32
    stride = 2

    def __init__(self, dim: int = 64, width: float = 1.0):
        super().__init__()
        widths = (1, *(max(4, round(c * width)) for c in SUB_CHANNELS), dim)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2 if i == 0 else 1) for i in range(len(widths) - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - 0.5) * 2.0  # [0,1] -> [-1,1]: zero-centred input for the first convolution
        for i, conv in enumerate(self.convs):
            h = conv(h)
            h = torch.tanh(h) if i == len(self.convs) - 1 else F.leaky_relu(h, 0.1)
        return h


class HierEncoder(nn.Module):
    """(B,1,H,W) -> (B,D,n,m): one D-vector per 64 px patch on the stride-2 grid (n = (H-64)//2+1 for even H)."""

    patch = 64
    stride = 2

    def __init__(self, dim: int = 64, hidden: int = 128, width: float = 1.0):
        """`width` scales the sub-encoder's channels (1.0 = reference; smaller for quick CPU runs)."""
        super().__init__()
        hidden = max(4, round(hidden * width))
        self.sub = SubEncoder(dim, width)
        self.join = nn.Conv2d(dim, hidden, 2, dilation=SubEncoder.patch // SubEncoder.stride)
        self.out = nn.Conv2d(hidden, dim, 1)

    def from_sub(self, e32: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(F.leaky_relu(self.join(e32), 0.1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_sub(self.sub(x))

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense 64 px and 32 px embedding maps of an image in one pass."""
        e32 = self.sub(x)
        return self.from_sub(e32), e32


class PositionClassifier(nn.Module):
    """8-way relative position of a neighbouring patch from the difference of two embeddings."""

    def __init__(self, dim: int = 64, hidden: int = 128, classes: int = 8):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, hidden)
        self.weight = nn.Parameter(torch.randn(classes, hidden) / hidden**0.5)

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc1((h1 - h2).flatten(1)), 0.1)
        h = F.leaky_relu(self.fc2(h), 0.1)
        return F.linear(h, F.normalize(self.weight, dim=1))  # row-normalised, bias-free (reference's NormalizedLinear)


class PatchSVDDTrainer(nn.Module):
    """The training graph: x (B,8,64,64) packs four 64 px and four 32 px patches (top-left corner).

    Planes: 0,1 position pair @64; 2,3 SVDD pair @64; 4,5 position pair @32; 6,7 SVDD pair @32.
    Returns (B, 18): position logits @64 (8), @32 (8), SVDD distances @64 and @32. The shared
    trainer calls `loss_fn(output, position_labels)` on it.
    """

    def __init__(self, encoder: HierEncoder):
        super().__init__()
        dim = encoder.out.out_channels
        self.encoder = encoder
        self.cls64, self.cls32 = PositionClassifier(dim), PositionClassifier(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = len(x)
        big = x[:, :4].reshape(b * 4, 1, 64, 64)
        small = x[:, 4:, :32, :32].reshape(b * 4, 1, 32, 32)
        e64 = self.encoder(big).reshape(b, 4, -1)
        e32 = self.encoder.sub(small).reshape(b, 4, -1)
        return torch.cat(
            [
                self.cls64(e64[:, 0], e64[:, 1]),
                self.cls32(e32[:, 0], e32[:, 1]),
                (e64[:, 2] - e64[:, 3]).norm(dim=1, keepdim=True),
                (e32[:, 2] - e32[:, 3]).norm(dim=1, keepdim=True),
            ],
            dim=1,
        )


def svdd_loss(lam: float):
    """Position cross-entropy at both scales + lam * mean SVDD distance at both scales (float32)."""

    def loss(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out, labels = out.float(), labels.long()
        pos = F.cross_entropy(out[:, :8], labels[:, 0]) + F.cross_entropy(out[:, 8:16], labels[:, 1])
        return pos + lam * (out[:, 16].mean() + out[:, 17].mean())

    return loss
