"""``recurrent_ae``: a recurrent convolutional autoencoder over the focal stack (supervised baseline).

The modified recurrent autoencoder of the video depth-from-defocus work (DESIGN.md
section 7, issue 6): an encoder-decoder whose skip connections pass through
recurrent convolutional cells, fed the frames one after the other in their stack
order (increasing focus distance).

    encoder   per frame, shared weights: level 0 at full size, level k at 1/2^k
              (3 x 3 convolutions with batch norm and ReLU; stride 2 between levels);
              input RGB plus the frame's focus distance as a constant channel
              (:meth:`~dfd_models.networks.supervised.SupervisedDepthModel.focus_planes`)
              and, with config ``blur_scales_px``, its blur features
    memory    one :class:`ConvGRUCell` per level, run over t = 0 .. T-1 on that level's
              features: h_k(t) = GRU_k(e_k(t), h_k(t-1)), h_k(-1) = 0
    decoder   from the deepest state up: 2 x 2 transposed convolution (stride 2) + batch
              norm + ReLU, concatenated with the level's state, 3 x 3 conv + BN + ReLU;
              a 1 x 1 head gives the depth logit (it starts at zero: the middle of the depth
              range)
    depth     the decoder on the states after the LAST frame, h_k(T-1): one depth map per
              stack, on the grid of the reference frame T // 2 (the loader's depth; the memory sees
              the whole stack, so static and moving sequences are handled alike)
    coc head  (config ``coc_head``) a second decoder of the same shape on the states after
              EACH frame, h_k(t), predicting that frame's unsigned CoC in pixels

The loss is the shared supervised one (:class:`dfd_models.networks.supervised.SupervisedDepthModel`).
T = 1 is allowed (one recurrent step), so ``dfdgen predict`` runs on a single image.
Height and width must be multiples of 2^(len(channels) - 1) (8 by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from generator.core.schema import setting
from dfd_models.networks.base import WIDTHS, register
from dfd_models.networks.blocks import zero_head
from dfd_models.networks.supervised import SupervisedConfig, SupervisedDepthModel

__all__ = ["ConvGRUCell", "RecurrentAE", "RecurrentAEConfig", "StackDecoder"]


def conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (zero padding, no bias) + batch norm + ReLU; ``stride`` 2 halves the size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016, "Delving deeper into convolutional networks for learning
    video representations", eq. 3 with 3 x 3 convolutions in place of products):

        z = sigmoid(W_z * [x, h]),  r = sigmoid(W_r * [x, h])
        h' = (1 - z) h + z tanh(W_h * [x, r h])

    Shapes:
        x [N, C_in, H, W], h [N, C_h, H, W] or None (zeros) -> h' [N, C_h, H, W]
    """

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, 3, padding=1)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        return (1 - z) * h + z * torch.tanh(self.candidate(torch.cat([x, r * h], 1)))


class StackDecoder(nn.Module):
    """U-Net-style decoder with transposed convolutions and batch norm over a feature pyramid.

    Args:
        channels: widths of the pyramid levels, full size first (level k at 1/2^k).
        out_channels: channels of the 1 x 1 head.
    Shapes:
        features[k] [N, channels[k], H / 2^k, W / 2^k] -> [N, out_channels, H, W]
    """

    def __init__(self, channels: Sequence[int], out_channels: int):
        super().__init__()
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(channels[k + 1], channels[k], 2, stride=2, bias=False),
                nn.BatchNorm2d(channels[k]),
                nn.ReLU(inplace=True),
            )
            for k in range(len(channels) - 2, -1, -1)
        )
        self.fuse = nn.ModuleList(conv_bn(2 * channels[k], channels[k]) for k in range(len(channels) - 2, -1, -1))
        self.head = zero_head(channels[0], out_channels)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for up, fuse, skip in zip(self.up, self.fuse, reversed(features[:-1])):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.head(x)


@dataclass(frozen=True, kw_only=True)
class RecurrentAEConfig(SupervisedConfig):
    """``recurrent_ae``'s config: :class:`~dfd_models.networks.supervised.SupervisedConfig`'s keys, and

    Attributes:
        channels: encoder widths per level, channels, full size first, at least two levels
            (4 levels: H, W multiples of 8).
        coc_head: on by default here: the per-frame CoC supervision is what makes the memory
            learn the defocus cue (docs/RESULTS.md). Measured on small_obj at 64 px (160 scenes,
            2000 steps, lr 1e-3): [8, 16, 32, 32] without the CoC head reached object AbsRel
            0.32-0.54, delta1 0.35-0.56; the default widths with the CoC head 0.23 / 0.66.
    """

    coc_head: bool = setting(True)
    channels: list[int] = setting([16, 32, 64, 64], **{**WIDTHS, "min_items": 2})


@register
class RecurrentAE(SupervisedDepthModel):
    """Recurrent convolutional autoencoder over the stack (module docstring).

    Config: :class:`RecurrentAEConfig`.

    Outputs of :meth:`forward`: ``depth`` [B, 1, H, W] metres, and with ``coc_head``
    ``coc`` [B, T, 1, H, W] (unsigned CoC of each frame, pixels).
    """

    name = "recurrent_ae"
    Config = RecurrentAEConfig
    config: RecurrentAEConfig

    def __init__(self, config: Mapping[str, Any] | RecurrentAEConfig | None = None):
        super().__init__(config)
        channels = self.config.channels
        widths = [self.frame_channels] + list(channels)  # RGB, focus channel, blur features
        self.encoder = nn.ModuleList(
            nn.Sequential(conv_bn(widths[k], c, stride=1 if k == 0 else 2), conv_bn(c, c))
            for k, c in enumerate(channels)
        )
        self.memory = nn.ModuleList(ConvGRUCell(c, c) for c in channels)
        self.depth_decoder = StackDecoder(channels, 1)
        self.coc_decoder = StackDecoder(channels, 1) if self.config.coc_head else None
        self.size_multiple = 2 ** (len(channels) - 1)

    def states(self, frames: Tensor, focus_m: Tensor) -> list[Tensor]:
        """The recurrent states of every level after every frame.

        Args:
            frames: linear RGB in stack order.  # [B, T, 3, H, W]
            focus_m: focus distances, metres.  # [B, T]
        Returns:
            per level k, h_k(t) for t = 0 .. T-1.  # [B, T, channels[k], H / 2^k, W / 2^k]
        """
        b, t = frames.shape[:2]
        x = self.frame_inputs(frames, focus_m).flatten(0, 1)  # [B T, C, H, W]
        states = []
        for block, cell in zip(self.encoder, self.memory):
            x = block(x)  # [B T, C_k, H_k, W_k]
            per_frame = x.unflatten(0, (b, t))
            hidden, sequence = None, []
            for step in range(t):
                hidden = cell(per_frame[:, step], hidden)
                sequence.append(hidden)
            states.append(torch.stack(sequence, 1))
        return states

    def stack_forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        b, t = frames.shape[:2]
        states = self.states(frames, focus)
        out = {"depth": self.depth_from_logit(self.depth_decoder([s[:, -1] for s in states]))}
        if self.coc_decoder is not None:
            logit = self.coc_decoder([s.flatten(0, 1) for s in states])  # [B T, 1, H, W]
            out["coc"] = self.coc_from_logit(logit).unflatten(0, (b, t))
        return out
