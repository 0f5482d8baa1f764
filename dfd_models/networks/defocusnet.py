"""``defocusnet``: DefocusNet's PoolNet, CoC of every frame then depth (supervised baseline).

After Maximov, Galim and Leal-Taixé, "Focus on defocus: bridging the synthetic to
real domain gap for depth estimation", CVPR 2020 (DESIGN.md section 7, issue 6).
Both stages are a :class:`PoolNet`: one U-Net branch per frame with shared weights,
where after each encoder level every branch's features are concatenated with their
maximum over the stack, so each frame sees what the others see whatever T is.

    stage 1   RGB of each frame, its focus plane (config ``focus_input``) and its parameter-free
              blur features (config ``blur_scales_px``, :func:`dfd_models.focus.blur_features`;
              [] = none, the paper's input) -> PoolNet ->
              1 x 1 head -> unsigned CoC c_t of every frame, pixels (``outputs["coc"]``)
    stage 2   [c_t / coc_scale_px, focus plane of F_t] per frame (the focus distance F_t as a
              constant channel, :meth:`SupervisedDepthModel.focus_planes`) -> PoolNet -> max
              over the stack -> 1 x 1 head -> depth on the reference frame's grid, bounded to
              [min_depth_m, max_depth_m] (:meth:`SupervisedDepthModel.depth_from_logit`)
    loss      depth + w_coc coc: the shared depth loss (MSE, or L1 of log depth with
              ``depth_space: log``), and the first stage's CoC loss
              against the CoC of the true depth through each frame's lens
              (:class:`~dfd_models.networks.supervised.SupervisedDepthModel`), always on
              (config ``coc_head`` must stay true; ``w_coc`` weighs the stages against each
              other, ``coc_loss`` picks L1 or MSE)

The stages are trained together (the depth loss reaches the first stage through the CoCs).
T = 1 is allowed (the stack maximum of one frame is that frame), so ``dfdgen predict``
runs on a single image. Height and width must be multiples of 2^(len(channels) - 1)
(4 by default; the larger of the two stages' when they differ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.core.schema import setting
from dfd_models.config import ConfigError
from dfd_models.networks.base import WIDTHS, register
from dfd_models.networks.blocks import ConvBlock, zero_head
from dfd_models.networks.supervised import SupervisedConfig, SupervisedDepthModel

__all__ = ["DefocusNet", "DefocusNetConfig", "PoolNet"]

#: :data:`~dfd_models.networks.base.WIDTHS` of a :class:`PoolNet`, which needs two levels at least.
POOLNET_WIDTHS = {**WIDTHS, "min_items": 2}


def stack_max(x: Tensor) -> Tensor:
    """Concatenate features [B, T, C, H, W] with their maximum over the stack: [B, T, 2C, H, W]."""
    return torch.cat([x, x.amax(1, keepdim=True).expand_as(x)], 2)


class PoolNet(nn.Module):
    """U-Net branches, one per frame with shared weights, joined by global max-pooling over the stack.

    Encoder level k (:class:`~dfd_models.networks.blocks.ConvBlock`, 2 x 2 max-pooling
    between levels) gives each frame ``channels[k]`` features, concatenated with their
    maximum over the T frames (:func:`stack_max`), so level k passes 2 ``channels[k]``
    on, to the next level and as the skip; the decoder upsamples (nearest, x 2),
    concatenates the skip and applies a ConvBlock, per frame. Nothing depends on T,
    the batch size or the image size (a multiple of :attr:`size_multiple`).

    Args:
        in_channels: input channels per frame C_in.
        channels: features per level, full size first.
    Shapes:
        [B, T, C_in, H, W] -> per-frame features [B, T, channels[0], H, W]
    """

    def __init__(self, in_channels: int, channels: Sequence[int]):
        super().__init__()
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels must list at least two positive widths, got {channels}")
        widths = [in_channels] + [2 * c for c in channels]
        self.encoder = nn.ModuleList(ConvBlock(widths[k], channels[k]) for k in range(len(channels)))
        below = [2 * channels[-1]] + list(channels[1:-1])[::-1]  # decoder input widths, deepest first
        self.decoder = nn.ModuleList(
            ConvBlock(up + 2 * channels[k], channels[k]) for up, k in zip(below, range(len(channels) - 2, -1, -1))
        )
        self.out_channels = channels[0]
        self.size_multiple = 2 ** (len(channels) - 1)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        x, skips = x.flatten(0, 1), []
        for k, block in enumerate(self.encoder):
            x = block(x if k == 0 else F.max_pool2d(x, 2)).unflatten(0, (b, t))  # [B, T, C_k, H_k, W_k]
            x = stack_max(x).flatten(0, 1)  # [B T, 2 C_k, H_k, W_k]
            skips.append(x)
        x = skips.pop()
        for block in self.decoder:
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1))
        return x.unflatten(0, (b, t))


@dataclass(frozen=True, kw_only=True)
class DefocusNetConfig(SupervisedConfig):
    """``defocusnet``'s config: :class:`~dfd_models.networks.supervised.SupervisedConfig`'s keys,
    whose CoC term is this model's first-stage loss, and

    Attributes:
        coc_head: must be true: the CoC head is the first stage.
        coc_channels: widths per level of the first (CoC) stage, channels, two levels at least.
        depth_channels: widths per level of the second (depth) stage, channels, two levels at least.
        focus_input: give the CoC stage each frame's focus distance (as
            :meth:`~dfd_models.networks.supervised.SupervisedDepthModel.focus_planes`), as the
            depth stage has it. Its branches share weights and meet only through the stack
            maximum, so without it a branch does not know which focus its frame has.
    """

    coc_head: bool = setting(True)
    coc_channels: list[int] = setting([8, 16, 32], **POOLNET_WIDTHS)
    depth_channels: list[int] = setting([8, 16, 32], **POOLNET_WIDTHS)
    focus_input: bool = setting(True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.coc_head:
            raise ConfigError("model.config.coc_head", self.coc_head, "true: the CoC head is defocusnet's first stage")


@register
class DefocusNet(SupervisedDepthModel):
    """PoolNet CoC stage then PoolNet depth stage (module docstring).

    Config: :class:`DefocusNetConfig`.

    Outputs of :meth:`forward`: ``depth`` [B, 1, H, W] metres, ``coc`` [B, T, 1, H, W]
    (unsigned CoC of each frame, pixels). :meth:`predict` is the shared one (forward on the frames).
    """

    name = "defocusnet"
    Config = DefocusNetConfig
    config: DefocusNetConfig

    @property
    def focus_input(self) -> bool:
        """The CoC stage sees the focus plane only with config ``focus_input``."""
        return self.config.focus_input

    def __init__(self, config: Mapping[str, Any] | DefocusNetConfig | None = None):
        super().__init__(config)
        self.coc_net = PoolNet(self.frame_channels, self.config.coc_channels)
        self.coc_out = nn.Conv2d(self.coc_net.out_channels, 1, 1)
        self.depth_net = PoolNet(2, self.config.depth_channels)
        self.depth_out = zero_head(self.depth_net.out_channels, 1)
        self.size_multiple = max(self.coc_net.size_multiple, self.depth_net.size_multiple)

    def stages(self, frames: Tensor, focus_m: Tensor) -> dict[str, Tensor]:
        """Both stages.

        Args:
            frames: linear RGB.  # [B, T, 3, H, W]
            focus_m: focus distances, metres.  # [B, T]
        Returns:
            ``coc`` [B, T, 1, H, W] pixels and ``depth`` [B, 1, H, W] metres, float32.
        """
        b, t, _, h, w = frames.shape
        focus = self.focus_planes(focus_m, h, w).to(frames.dtype)  # [B, T, 1, H, W]
        coc = self.coc_from_logit(self.coc_out(self.coc_net(self.frame_inputs(frames, focus_m)).flatten(0, 1)))
        coc = coc.unflatten(0, (b, t))
        features = self.depth_net(torch.cat([(coc / self.config.coc_scale_px).to(frames.dtype), focus], 2))
        depth = self.depth_from_logit(self.depth_out(features.amax(1)))
        return {"depth": depth, "coc": coc}

    def stack_forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        return self.stages(frames, focus)
