"""The convolutional autoencoder of Bergmann et al. (2019, "Improving unsupervised defect segmentation
by applying structural similarity to autoencoders"), for gray patches.

Encoder (128 px input, `base` = 32): 4x4/2 32, 4x4/2 32, 3x3/1 32, 4x4/2 64, 3x3/1 64, 4x4/2 128,
3x3/1 64, 3x3/1 32, then a valid (patch/16)^2 convolution to the `latent` (100) vector. The decoder
mirrors it with transposed convolutions for the strided layers. LeakyReLU 0.2 after every layer
except the linear latent and the sigmoid output (inputs and reconstructions live in [0, 1]).
"""

from __future__ import annotations

from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class BergmannAE(nn.Module):
    """(B,1,p,p) in [0,1] -> reconstruction (B,1,p,p) in [0,1]; p a multiple of 16."""

    def __init__(self, patch: int = 128, latent: int = 100, base: int = 32):
        super().__init__()
        if patch % 16 or patch < 16:
            raise ValueError(f"patch={patch}: must be a positive multiple of 16")
        c1, c2, c3 = base, 2 * base, 4 * base
        k = patch // 16  # spatial size after four stride-2 layers
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 4, 2, 1), _act(),
            nn.Conv2d(c1, c1, 4, 2, 1), _act(),
            nn.Conv2d(c1, c1, 3, 1, 1), _act(),
            nn.Conv2d(c1, c2, 4, 2, 1), _act(),
            nn.Conv2d(c2, c2, 3, 1, 1), _act(),
            nn.Conv2d(c2, c3, 4, 2, 1), _act(),
            nn.Conv2d(c3, c2, 3, 1, 1), _act(),
            nn.Conv2d(c2, c1, 3, 1, 1), _act(),
            nn.Conv2d(c1, latent, k, 1, 0),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(latent, c1, k, 1, 0), _act(),
            nn.Conv2d(c1, c2, 3, 1, 1), _act(),
            nn.Conv2d(c2, c3, 3, 1, 1), _act(),
            nn.ConvTranspose2d(c3, c2, 4, 2, 1), _act(),
            nn.Conv2d(c2, c2, 3, 1, 1), _act(),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), _act(),
            nn.Conv2d(c1, c1, 3, 1, 1), _act(),
            nn.ConvTranspose2d(c1, c1, 4, 2, 1), _act(),
            nn.ConvTranspose2d(c1, 1, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))
