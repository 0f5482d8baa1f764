"""``ddff``: Deep Depth From Focus (Hazirbas et al., ACCV 2018), small, supervised.

A VGG-style encoder-decoder (:class:`~dfd_models.networks.supervised.Encoder`,
:class:`~dfd_models.networks.supervised.Decoder`) runs on every frame of the stack
with shared weights; its input is the frame's linear RGB, its focus distance as
a constant channel (:meth:`SupervisedDepthModel.focus_planes`) and, with config
``blur_scales_px``, its blur features (:meth:`SupervisedDepthModel.blur_cues`). Per
frame t and pixel it outputs a focus score s_t and a depth-logit offset v_t, and the
stack is combined DDFF's focus-measure way, in the bounded depth logit
(:meth:`SupervisedDepthModel.depth_from_logit`, linear or log in depth):

    w_t = softmax_t(s_t)                      (over the frames, per pixel)
    y   = sum_t w_t (logit(F_t) + v_t)        logit(F_t) = the depth logit of focus distance F_t
    z   = depth_from_logit(y)                 metres, in [min_depth_m, max_depth_m]

so the sharpest frame's focus distance is the depth where the offsets are zero,
and the offsets let depth leave the span of the focus distances (points nearer
than the nearest or beyond the farthest focus plane). Nothing depends on T: any
T >= 1 works (T = 1 is ``dfdgen predict``'s one-image stack). The untrained
network (zero heads) outputs the mean of the frames' focus logits.

With config ``coc_head`` a second decoder on the same per-frame features predicts
each frame's unsigned CoC in pixels (``outputs["coc"]`` [B, T, 1, H, W]), supervised
with the true CoC (:class:`SupervisedDepthModel` losses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from generator.core.schema import setting
from dfd_models.networks.base import WIDTHS, register
from dfd_models.networks.supervised import Decoder, Encoder, SupervisedConfig, SupervisedDepthModel

__all__ = ["DDFF", "DDFFConfig"]


@dataclass(frozen=True, kw_only=True)
class DDFFConfig(SupervisedConfig):
    """``ddff``'s config: :class:`~dfd_models.networks.supervised.SupervisedConfig`'s keys, and

    Attributes:
        channels: encoder/decoder widths per level, channels (H, W multiples of 2^(levels - 1)).
    """

    channels: list[int] = setting([16, 32, 64, 64], **WIDTHS)


@register
class DDFF(SupervisedDepthModel):
    """Per-frame encoder-decoder, focus scores softmaxed across the stack (module docstring).

    Config: :class:`DDFFConfig`.

    Outputs of :meth:`forward`:
        ``depth`` [B, 1, H, W]: metres, on every frame's grid (the stack's frames are
            combined pixel by pixel; the reference frame's grid is the one scored).
        ``scores`` [B, T, 1, H, W]: the per-frame focus scores s_t (softmax logits).
        ``coc`` [B, T, 1, H, W]: per-frame CoC, pixels (only with ``coc_head``).
    """

    name = "ddff"
    Config = DDFFConfig
    config: DDFFConfig

    def __init__(self, config: Mapping[str, Any] | DDFFConfig | None = None):
        super().__init__(config)
        channels = self.config.channels
        self.encoder = Encoder(self.frame_channels, channels)
        self.depth_decoder = Decoder(channels, 2)  # score s_t, offset v_t
        self.coc_decoder = Decoder(channels, 1) if self.config.coc_head else None
        self.size_multiple = self.encoder.size_multiple

    def stack_forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        b, t = frames.shape[:2]
        x = self.frame_inputs(frames, focus).flatten(0, 1)  # [BT, C, H, W]
        features = self.encoder(x)
        out = self.depth_decoder(features).float().unflatten(0, (b, t))  # [B, T, 2, H, W]
        logit = self.focus_weighted_logit(out, focus)  # [B, 1, H, W]
        outputs = {"depth": self.depth_from_logit(logit), "scores": out[:, :, :1]}
        if self.coc_decoder is not None:
            outputs["coc"] = self.coc_from_logit(self.coc_decoder(features)).unflatten(0, (b, t))
        return outputs
