"""``sdgs_stack``: ``sdgs`` whose DepthNet sees the two ends of the focal stack, not one frame.

Same self-supervision as :class:`dfd_models.networks.sdgs.SDGS` (subclassed; nothing copied):
the Siamese DefocusNet on every frame, the stack re-rendered by the splat renderer from the
predicted depth, the re-rendering sweep teacher, the CoC and smoothness terms; it reads only
:data:`dfd_models.networks.sdgs.BATCH_KEYS` (no depth, no all-in-focus image).

What differs is what DepthNet sees. ``sdgs`` predicts depth from one image, where blur alone
cannot tell the texture's own softness from defocus. Here DepthNet takes two views, each image
(3) + its defocus map (1) + its lens code (2) + its blur features (``depth_blur_features``, on by
default here: without them DepthNet learnt no depth from the teacher), of the nearest-focused frame (0) and the
farthest-focused frame (T - 1), both on frame r's grid (``input_frame``, default the nearest;
the other resampled exactly, :func:`dfd_models.focus.warp_to_grid`): a surface sharp in one and
blurred in the other is placed between or beyond the two planes of focus by the pair, as in depth
from defocus with two images (Subbarao and Surya, IJCV 13(3), 1994). With ``depth_from_defocus``
the logit starts from the depth the nearest frame's defocus map implies (every surface behind
its plane of focus), as ``sdgs`` with ``input_frame: nearest``. Fixed at two views, the layers
do not depend on T. Depth is returned on the reference frame's grid; :meth:`predict` needs both end
frames (T = 1: the one frame twice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from generator.core.schema import setting
from dfd_models.focus import warp_to_grid
from dfd_models.lens import LensParams
from dfd_models.networks.base import register
from dfd_models.networks.sdgs import SDGS, SDGSConfig, _input_index

__all__ = ["SDGSStack", "SDGSStackConfig"]


@dataclass(frozen=True, kw_only=True)
class SDGSStackConfig(SDGSConfig):
    """:class:`~dfd_models.networks.sdgs.SDGSConfig`, with ``depth_blur_features`` on by default:
    without them DepthNet learnt no depth from the teacher (validation Pearson 0.01 after 200
    steps, 0.46 with them: benchmarks/sdgs_signals.py)."""

    depth_blur_features: bool = setting(True)


@register
class SDGSStack(SDGS):
    """``sdgs`` with DepthNet on the stack's nearest and farthest frames (module docstring).

    Config: :class:`SDGSStackConfig`. Outputs: :class:`~dfd_models.networks.sdgs.SDGS`'s.
    """

    name = "sdgs_stack"
    Config = SDGSStackConfig
    config: SDGSStackConfig
    depth_views = 2

    def seen_frames(self, frames: int) -> list[int]:
        """The nearest- and farthest-focused frames, 0 and T - 1."""
        return [0, frames - 1]

    def inverse_depth(self, frames: Tensor, defocus_px: Tensor, focus_m: Tensor, K: Tensor,
                      lens: LensParams) -> Tensor:
        """Inverse depth (1/m) on frame r's grid from frames 0 and T - 1 and their defocus maps.

        Args and returns as :meth:`SDGS.inverse_depth`.  # -> [B, 1, H, W]
        """
        t = frames.shape[1]
        r = _input_index(self.config.input_frame, t)

        def on_r(x: Tensor, i: int) -> Tensor:  # frame i's map on frame r's grid
            return x if i == r else warp_to_grid(x, K[:, i].float().to(x.dtype), K[:, r].float().to(x.dtype))

        views, codes, maps = [], [], []
        for i in (0, t - 1):
            image, defocus = on_r(frames[:, i], i), on_r(defocus_px[:, i], i)
            code = self._code(image, focus_m[:, i], lens)
            views.append(self._view(image, defocus, code))
            codes.append(code)
            maps.append(defocus)
        logit = self.depth_net(torch.cat(views, 1)).float()
        return self._inverse_depth(logit, maps[0], focus_m[:, 0], codes[0], side=-1.0)
