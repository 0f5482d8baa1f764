"""Small building blocks shared by the networks: a plain U-Net with an explicit channel contract."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvBlock", "UNet", "focus_vote", "zero_head"]


def focus_vote(out: Tensor, prior: Tensor) -> Tensor:
    """DDFF's stack combination (Hazirbas et al., ACCV 2018): per frame t a focus score s_t and an
    offset v_t from the frame's prior p_t (the depth logit of where frame t is sharp),

        y = sum_t softmax_t(s_t) (p_t + v_t)

    so the sharpest frame's prior is the answer where the offsets are zero; nothing depends on T.

    Args:
        out: [s_t, v_t] per frame.  # [B, T, 2, H, W]
        prior: p_t, broadcast over the pixels.  # [B, T, 1, 1, 1] (or [B, T, 1, H, W])
    Returns:
        y.  # [B, 1, H, W]
    """
    scores, offsets = out[:, :, :1].float(), out[:, :, 1:].float()
    return (torch.softmax(scores, 1) * (prior + offsets)).sum(1)


def zero_head(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1 x 1 convolution whose weights and bias start at zero: an untrained network built on it
    outputs zeros, so every head starts at its neutral value (for the supervised baselines' depth
    logit, :meth:`~dfd_models.networks.supervised.SupervisedDepthModel.depth_from_logit`, the
    middle of the depth range, not near either end of it)."""
    head = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class ConvBlock(nn.Sequential):
    """Two 3 x 3 convolutions (zero padding, size kept), each followed by ELU (as monodepth2's decoder)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ELU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ELU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): ``len(channels)`` levels, each half the size of the one above.

    Encoder level k has ``channels[k]`` channels at 1/2^k of the input size (2 x 2
    max-pooling between levels); the decoder upsamples (nearest, x 2), concatenates
    the encoder's features of that level and applies a :class:`ConvBlock`; a 1 x 1
    convolution maps the ``channels[0]`` full-size features to ``out_channels``.
    No normalisation layers: the output of one image does not depend on the others
    in the batch, and nothing depends on the batch size or the image size, except
    that height and width must be multiples of :attr:`size_multiple`.

    The last convolution starts at zero, so an untrained network outputs zeros
    (heads built on it start from their neutral value).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        channels: features per level, full size first.
    Shapes:
        [B, C_in, H, W] -> [B, C_out, H, W]
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int]):
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels}")
        self.in_channels, self.out_channels, self.channels = in_channels, out_channels, tuple(channels)
        widths = (in_channels,) + self.channels
        self.encoder = nn.ModuleList(ConvBlock(widths[k], widths[k + 1]) for k in range(len(channels)))
        self.decoder = nn.ModuleList(
            ConvBlock(channels[k] + channels[k - 1], channels[k - 1]) for k in range(len(channels) - 1, 0, -1)
        )
        self.head = zero_head(channels[0], out_channels)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2^(levels - 1)."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"UNet input {h} x {w} is not a multiple of {self.size_multiple}")
        skips = []
        for k, block in enumerate(self.encoder):
            x = block(x if k == 0 else F.max_pool2d(x, 2))  # [B, channels[k], H / 2^k, W / 2^k]
            skips.append(x)
        x = skips.pop()
        for block in self.decoder:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips.pop()], 1))
        return self.head(x)  # [B, out_channels, H, W]
