"""``sdgs_stack``: ``sdgs`` whose DepthNet sees the focal stack, not one frame.

Same self-supervision as :class:`dfd_models.networks.sdgs.SDGS` (subclassed; nothing copied):
the Siamese DefocusNet on every frame, the stack re-rendered by the splat renderer from the
predicted depth, the re-rendering sweep teacher, the CoC and smoothness terms; it reads only
:data:`dfd_models.networks.sdgs.BATCH_KEYS` (no depth, no all-in-focus image).

What differs is what DepthNet sees. ``sdgs`` predicts depth from one image, where blur alone
cannot tell the texture's own softness from defocus. Here each view is a frame on frame r's grid
(``input_frame``, default the nearest; the others resampled exactly,
:func:`dfd_models.focus.warp_to_grid`): image (3) + its defocus map (1) + its lens code (2) + its
blur features (``depth_blur_features``, on by default here: without them DepthNet learnt no depth
from the teacher). Config ``depth_views`` picks the views:

- ``all`` (the default): every frame. DepthNet is Siamese too: the same U-Net on each view gives
  a focus score s_t and an offset v_t, combined across the stack as DDFF combines its frames
  (:func:`dfd_models.networks.blocks.focus_vote`), in sdgs's inverse-depth logit:
  y = sum_t softmax_t(s_t) (p_t + v_t), with p_t the logit of 1/F_t under ``depth_from_defocus``
  (the depth where frame t's defocus is zero) and 0 without it. Any T >= 1 works.
- ``ends``: the nearest (0) and farthest (T - 1) frames, concatenated into one U-Net: a surface
  sharp in one and blurred in the other is placed between or beyond the two planes of focus, as
  in depth from defocus with two images (Subbarao and Surya, IJCV 13(3), 1994). With
  ``depth_from_defocus`` the logit starts from the depth the nearest frame's defocus map implies
  (every surface behind its plane of focus), as ``sdgs`` with ``input_frame: nearest``.
- ``volume``: the teacher's own evidence. DepthNet sees frame r's image and the re-rendering
  sweep's cost volume over its D depth planes (:func:`dfd_models.networks.sdgs.sweep_volume`, each
  pixel's costs over their mean, a function of the frames alone) and outputs a correction per plane,
  subtracted from those costs; the inverse depth is the planes' average under the softmax of
  -:data:`dfd_models.focus.SOFT_ARGMIN_SHARPNESS` times the corrected costs. Untrained (a zero
  head) it is the sweep's soft argmin, the teacher with ``sweep_estimate: soft``, so what it learns
  beyond the teacher comes from the image's context and from the re-rendering. The defocus maps
  are not read.

Why ``all``: distilled from the same teacher at the same budget, the ``ends`` DepthNet learnt no
depth order on validation objects and the Siamese one did (docs/NOTES.md). Depth is returned on
the reference frame's grid; :meth:`predict` needs the frames :meth:`seen_frames` names (T = 1:
the one frame, as every view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from generator.core.schema import setting
from dfd_models.focus import relative_cost, soft_argmin, warp_to_grid
from dfd_models.lens import LensParams
from dfd_models.networks.base import lens_from_batch, register
from dfd_models.networks.blocks import focus_vote
from dfd_models.networks.sdgs import SDGS, SWEEP_SPACES, SDGSConfig, _input_index, sweep_plane_count, sweep_volume

__all__ = ["DEPTH_VIEWS", "SDGSStack", "SDGSStackConfig"]

#: Config ``depth_views``: what DepthNet sees (module docstring).
DEPTH_VIEWS = ("all", "ends", "volume")


@dataclass(frozen=True, kw_only=True)
class SDGSStackConfig(SDGSConfig):
    """:class:`~dfd_models.networks.sdgs.SDGSConfig` with two other defaults: ``depth_blur_features``
    on (without them the two-view DepthNet learnt no depth from the teacher: validation Pearson
    0.01 after 200 steps, 0.46 with them: benchmarks/sdgs_signals.py) and ``sweep_space: log`` (see
    :class:`~dfd_models.networks.sdgs.SDGSConfig`); and one more key:

    Attributes:
        depth_views: what DepthNet sees, one of :data:`DEPTH_VIEWS` (module docstring).
    """

    depth_blur_features: bool = setting(True)
    sweep_space: str = setting("log", choices=SWEEP_SPACES)
    depth_views: str = setting("all", choices=DEPTH_VIEWS)


@register
class SDGSStack(SDGS):
    """``sdgs`` with DepthNet on the stack (module docstring).

    Config: :class:`SDGSStackConfig`. Outputs: :class:`~dfd_models.networks.sdgs.SDGS`'s.
    """

    name = "sdgs_stack"
    Config = SDGSStackConfig
    config: SDGSStackConfig
    saved_before = {"depth_views": "ends", "sweep_space": "inverse"}  # sdgs_stack before both keys

    def depth_net_channels(self, view: int) -> tuple[int, int]:
        """``all``: one view in, its focus score and offset out; ``ends``: two views in, the logit out;
        ``volume``: frame r's image and the D planes' costs in, a logit per plane out."""
        if self.config.depth_views == "volume":
            planes = sweep_plane_count(self.config)
            return 3 + planes, planes
        return (view, 2) if self.config.depth_views == "all" else (2 * view, 1)

    def seen_frames(self, frames: int) -> list[int]:
        """Every frame (``all``, ``volume``), or the nearest- and farthest-focused frames, 0 and T - 1 (``ends``)."""
        return [0, frames - 1] if self.config.depth_views == "ends" else list(range(frames))

    def inverse_depth(self, frames: Tensor, defocus_px: Tensor, focus_m: Tensor, K: Tensor,
                      lens: LensParams) -> Tensor:
        """Inverse depth (1/m) on frame r's grid from the frames :meth:`seen_frames` names and their
        defocus maps.

        Args and returns as :meth:`SDGS.inverse_depth`.  # -> [B, 1, H, W]
        """
        b, t = frames.shape[:2]
        r = _input_index(self.config.input_frame, t)
        if self.config.depth_views == "volume":
            return self._corrected_soft_argmin(frames[:, r], *self._volume(frames, focus_m, K, lens, r))

        def on_r(x: Tensor, i: int) -> Tensor:  # frame i's map on frame r's grid
            return x if i == r else warp_to_grid(x, K[:, i].float().to(x.dtype), K[:, r].float().to(x.dtype))

        seen = self.seen_frames(t)
        maps = [on_r(defocus_px[:, i], i) for i in seen]
        codes = [self._code(frames[:, i], focus_m[:, i], lens) for i in seen]  # constant channels: no warp
        views = [self._view(on_r(frames[:, i], i), m, c) for i, m, c in zip(seen, maps, codes)]
        if self.config.depth_views == "ends":
            logit = self.depth_net(torch.cat(views, 1)).float()
            return self._inverse_depth(logit, maps[0], focus_m[:, 0], codes[0], side=-1.0)
        out = self.depth_net(torch.stack(views, 1).flatten(0, 1)).float().unflatten(0, (b, len(seen)))
        focus = focus_m[:, seen].float()  # [B, n]
        # each frame's vote starts where it is sharp (1/F_t) with depth_from_defocus, else at the bias
        prior = self.inverse_logit(1 / focus) if self.config.depth_from_defocus else torch.zeros_like(focus)
        return self.inverse_of_logit(focus_vote(out, prior[:, :, None, None, None]))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        """:meth:`SDGS.forward`; the volume view adds the sweep's ``sweep_inv`` [D] and ``sweep_cost``
        [B, D, H, W], which :meth:`SDGS.losses` then reads instead of computing them again."""
        if self.config.depth_views != "volume":
            return super().forward(batch)
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        lens = lens_from_batch(batch)
        r = _input_index(self.config.input_frame, frames.shape[1])
        inv, cost = self._volume(frames, focus, K, lens, r)
        outputs = self.reconstruct(batch, self._corrected_soft_argmin(frames[:, r], inv, cost),
                                   self.defocus_maps(frames, focus, lens))
        return {**outputs, "sweep_inv": inv, "sweep_cost": cost}

    def _volume(self, frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, r: int) -> tuple[Tensor, Tensor]:
        """The teacher's cost volume (:func:`sweep_volume`, float32, no gradient): ([D] 1/m, [B, D, H, W])."""
        with torch.autocast(frames.device.type, enabled=False), torch.no_grad():
            return sweep_volume(self.config, frames.float(), focus_m.float(), K.float(),
                                lens.to(dtype=torch.float32), r)

    def _corrected_soft_argmin(self, image: Tensor, inv: Tensor, cost: Tensor) -> Tensor:
        """``depth_views: volume`` (module docstring): the soft argmin of the relative costs less DepthNet's
        correction, in the same units.  # image [B, 3, H, W] -> [B, 1, H, W], 1/m"""
        relative = relative_cost(cost)
        correction = self.depth_net(torch.cat([image, (1 - relative).to(image.dtype)], 1)).float()
        return soft_argmin(inv, relative - correction)

    def depth(self, image: Tensor, defocus_px: Tensor, focus_m: Tensor, lens: LensParams) -> Tensor:
        """Not defined for one frame: DepthNet sees several (:meth:`inverse_depth`)."""
        raise TypeError("sdgs_stack's DepthNet sees several frames: use inverse_depth or predict")
