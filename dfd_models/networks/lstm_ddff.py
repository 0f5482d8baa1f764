"""``lstm_ddff``: DDFF with a recurrent module over the stack, small, supervised.

The encoder of ``ddff`` (:class:`~dfd_models.networks.supervised.Encoder`, shared
weights, input each frame's linear RGB, its focus distance as a constant channel
and, with config ``blur_scales_px``, its blur features) runs on every frame. Then:

- Recurrence: each frame's bottleneck features (deepest level, C_L channels) are
  average-pooled to a fixed ``lstm_grid`` x ``lstm_grid`` grid and flattened
  (C_L g^2 numbers, whatever the image size), and a two-layer LSTM
  (``lstm_hidden`` units) reads them in the stack's order of increasing focus
  distance. A linear map takes its output at each step back to a C_L x g x g
  context, upsampled (bilinear) to the bottleneck's size.
- Depth decoder (:class:`~dfd_models.networks.supervised.Decoder`) per frame, on
  that frame's own skips and its bottleneck plus the context of its LSTM step
  (which has seen the frames up to it): a focus score s_t and a depth-logit
  offset v_t, combined across the stack as ``ddff`` does
  (:meth:`SupervisedDepthModel.focus_weighted_logit`: softmax over the frames of
  the scores weighting logit(F_t) + v_t). An earlier version decoded one depth
  from the frames' mean and maximum features: order-free, it lost which frame is
  sharp and predicted a constant where ``ddff`` learned (docs/NOTES.md).

Any T >= 1 works (T = 1 is ``dfdgen predict``'s one-image stack).

With config ``coc_head`` a second decoder predicts each frame's CoC (pixels,
``outputs["coc"]`` [B, T, 1, H, W]) from that frame's own skips, its bottleneck
plus the context of its LSTM step (which has seen the frames up to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from generator.core.schema import setting
from dfd_models.networks.base import MAX_WIDTH, WIDTHS, register
from dfd_models.networks.supervised import Decoder, Encoder, SupervisedConfig, SupervisedDepthModel

__all__ = ["LSTMDDFF", "LSTMDDFFConfig"]


@dataclass(frozen=True, kw_only=True)
class LSTMDDFFConfig(SupervisedConfig):
    """``lstm_ddff``'s config: :class:`~dfd_models.networks.supervised.SupervisedConfig`'s keys, and

    Attributes:
        channels: encoder/decoder widths per level, channels (H, W multiples of 2^(levels - 1)).
        lstm_grid: side g of the pooled bottleneck grid the LSTM reads (g x g cells), 1 to 8.
        lstm_hidden: LSTM units per layer.
    """

    channels: list[int] = setting([16, 32, 64, 64], **WIDTHS)
    # The LSTM reads channels[-1] x lstm_grid^2 numbers: at the largest widths and grid 8, 1 GB of weights.
    lstm_grid: int = setting(2, ge=1, le=8)
    lstm_hidden: int = setting(128, ge=1, le=MAX_WIDTH)


@register
class LSTMDDFF(SupervisedDepthModel):
    """Per-frame encoder, two-layer LSTM over pooled bottlenecks, mean/max skip aggregation (module docstring).

    Config: :class:`LSTMDDFFConfig`.

    Outputs of :meth:`forward`:
        ``depth`` [B, 1, H, W]: metres.
        ``coc`` [B, T, 1, H, W]: per-frame CoC, pixels (only with ``coc_head``).
    """

    name = "lstm_ddff"
    Config = LSTMDDFFConfig
    config: LSTMDDFFConfig

    def __init__(self, config: Mapping[str, Any] | LSTMDDFFConfig | None = None):
        super().__init__(config)
        cfg = self.config
        channels, grid = cfg.channels, cfg.lstm_grid
        self.encoder = Encoder(self.frame_channels, channels)
        cells = channels[-1] * grid * grid
        self.lstm = nn.LSTM(cells, cfg.lstm_hidden, num_layers=2, batch_first=True)
        self.context = nn.Linear(cfg.lstm_hidden, cells)
        self.depth_decoder = Decoder(channels, 2)  # score s_t, offset v_t
        self.coc_decoder = Decoder(channels, 1) if cfg.coc_head else None
        self.size_multiple = self.encoder.size_multiple

    def stack_forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        b, t = frames.shape[:2]
        x = self.frame_inputs(frames, focus).flatten(0, 1)  # [BT, C, H, W]
        features = self.encoder(x)  # per level [BT, C_k, H_k, W_k]

        bottleneck = features[-1]  # [BT, C_L, H_L, W_L]
        grid = self.config.lstm_grid
        cells = F.adaptive_avg_pool2d(bottleneck, grid).flatten(1).unflatten(0, (b, t))  # [B, T, C_L g^2]
        steps, _ = self.lstm(cells.float())  # [B, T, hidden]
        context = self.context(steps).reshape(b * t, -1, grid, grid)  # [BT, C_L, g, g]
        context = F.interpolate(context, size=bottleneck.shape[-2:], mode="bilinear", align_corners=False)
        context = context.to(bottleneck.dtype).unflatten(0, (b, t))  # [B, T, C_L, H_L, W_L]

        own = features[:-1] + [bottleneck + context.flatten(0, 1)]  # each frame's, with its LSTM step
        out = self.depth_decoder(own).float().unflatten(0, (b, t))  # [B, T, 2, H, W]
        outputs = {"depth": self.depth_from_logit(self.focus_weighted_logit(out, focus))}
        if self.coc_decoder is not None:
            outputs["coc"] = self.coc_from_logit(self.coc_decoder(own)).unflatten(0, (b, t))
        return outputs
