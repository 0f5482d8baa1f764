"""Reference predictors: depth without learning, scored beside the networks (DESIGN.md section 7).

A model that does not beat these has not learned:

- ``constant``: one depth everywhere, the median valid depth of the training
  split (exact: the median over every valid pixel of the reference frame of every
  training stack, numpy's definition, the mean of the two middle values for an
  even count). Config ``region``: ``"all"`` (default) takes every valid pixel, so
  on scenes in front of a wall it predicts about the wall's depth; ``"objects"``
  takes the valid pixels off the background wall (the batches' ``wall`` mask),
  the constant to beat on the ``objects`` region the evaluator scores. Fitted
  from labels, so ``supervised``.
- ``dff``: classical depth from focus, :func:`dfd_models.focus.dff_depth_and_confidence`:
  the frames put on the reference frame's grid (exact under focus breathing), the energy
  of the Laplacian as focus measure ("LAP2" in Pertuz, Puig and Garcia, "Analysis
  of focus measure operators for shape-from-focus", Pattern Recognition 46(5),
  2013), the sharpest frame per pixel refined by a parabola in diopters. Nothing
  to fit. Config ``beyond_range``: ``"clamp"`` (default) keeps depth within the
  stack's focus range; ``"extrapolate"`` places a pixel sharpest in an end frame
  beyond it by depth from defocus with the known lens, within
  [``min_depth_m``, ``max_depth_m``]. Either way a confidence (low where the
  sharpest frame is an end frame), which ``dfdgen predict`` writes.
- ``dfd_sweep``: depth from defocus by re-rendering,
  :func:`dfd_models.networks.sdgs.sweep_teacher` with sdgs's defaults (the sharp composite
  re-rendered as every frame from 32 planes, the best plane per window), over ``sdgs``'s depth range:
  the label-free teacher ``sdgs`` trains with, scored on its own so a reader sees
  how much of it the single-image network keeps. Nothing to fit; needs T >= 2.

Neither has a trainable parameter (``trainable = False``, :class:`ReferenceModel`):
``dfdgen train`` builds no optimizer for them; it calls :meth:`DepthModel.fit`
once with one pass over the training split and writes an ordinary checkpoint at
step 0 (see :mod:`dfd_models.train`), so ``dfdgen eval``, ``dfdgen predict`` and
the results table treat them as any model. ``constant`` keeps its value in
buffers, so it is in the checkpoint's ``model`` state_dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from generator.core.schema import setting
from dfd_models.data.batch import reference_index
from dfd_models.focus import DFF_BEYOND_RANGE, dff_depth_and_confidence
from dfd_models.lens import LensParams
from dfd_models.networks.base import DepthModel, DepthRangeConfig, ModelConfig, lens_from_batch, register
from dfd_models.networks.sdgs import SDGSConfig, sweep_teacher  # the sweep's settings are sdgs's (one owner)

__all__ = ["CONSTANT_REGIONS", "Constant", "ConstantConfig", "DFFConfig", "DefocusSweep", "DepthFromFocus",
           "ReferenceModel"]

#: Values of ``constant``'s config ``region``: the pixels whose median depth it predicts.
CONSTANT_REGIONS = ("all", "objects")


@dataclass(frozen=True, kw_only=True)
class ConstantConfig(ModelConfig):
    """``constant``'s config.

    Attributes:
        region: one of :data:`CONSTANT_REGIONS`: ``all`` (default), the median over every valid
            pixel; ``objects``, over the valid pixels off the background wall (``batch["wall"]``,
            which shards that record the wall's depth give; fitting raises ValueError on
            batches without it).
    """

    region: str = setting("all", choices=CONSTANT_REGIONS)


@dataclass(frozen=True, kw_only=True)
class DFFConfig(DepthRangeConfig):
    """``dff``'s config; the depth range, metres, bounds extrapolated depth (``extrapolate``).

    Attributes:
        beyond_range: one of :data:`dfd_models.focus.DFF_BEYOND_RANGE`: ``clamp`` (default: depth
            within the stack's focus range) or ``extrapolate`` (a pixel sharpest in an end frame
            placed by the Gaussian fit of its focus measure across the end frames, possibly beyond
            the range, within [min_depth_m, max_depth_m]).
    """

    beyond_range: str = setting("clamp", choices=DFF_BEYOND_RANGE)


class ReferenceModel(DepthModel):
    """A predictor without trainable parameters: fitted (:meth:`fit`), never optimised.

    :meth:`forward` is :meth:`predict` on a batch (``{"depth"}``, for code that
    looks at a batch's outputs); :meth:`losses` raises, since there is nothing
    to optimise. No config keys unless a subclass declares its :attr:`Config` (``constant``'s
    ``region``, ``dff``'s ``beyond_range`` and depth range).
    """

    trainable = False

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return {"depth": self.predict(batch["frames"], batch["focus_m"], lens_from_batch(batch), batch["K"])}

    def losses(self, batch: dict, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError(f"model {self.name!r} is a reference predictor: it is fitted (fit), "
                                  "not trained, and has no losses")


@register
class Constant(ReferenceModel):
    """The training split's median valid depth, everywhere (module docstring).

    Config: :class:`ConstantConfig`.

    Buffers (in the state_dict): ``depth_m`` float64 [] (NaN until fitted) and
    ``n_pixels`` int64 [] (valid pixels the median was taken over; 0 = not fitted).

    :meth:`fit` keeps every valid depth of the pass in memory (4 bytes a pixel:
    1000 stacks of 256 x 256 px need about 260 MB) to take the exact median.
    """

    name = "constant"
    supervised = True  # fitting reads batch["depth"] and batch["valid"] (and batch["wall"])
    Config = ConstantConfig
    config: ConstantConfig

    def __init__(self, config: Mapping[str, Any] | ConstantConfig | None = None):
        super().__init__(config)
        self.register_buffer("depth_m", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("n_pixels", torch.tensor(0, dtype=torch.int64))

    @property
    def fitted(self) -> bool:
        return int(self.n_pixels) > 0

    def fit(self, batches: Iterable[dict]) -> dict[str, float]:
        """The median of the valid depths (``depth`` of the reference frame where ``valid``) of ``batches``,
        off the wall (``wall``) with config ``region: objects``.

        Raises:
            ValueError: the batches hold no valid pixel (off the wall, for ``objects``), or, for
                ``objects``, a batch has no ``wall`` mask.
        """
        objects = self.config.region == "objects"
        values, wall = [], 0
        for batch in batches:
            depth, valid = batch["depth"], batch["valid"]  # [B, 1, H, W]
            keep = valid.bool() & (depth > 0)
            if objects:
                if "wall" not in batch:
                    raise ValueError("constant with region 'objects' needs the wall mask (batch key 'wall', from "
                                     "shards whose metadata records depth.wall_m); this data has none")
                on_wall = keep & batch["wall"].bool()  # [B, 1, H, W]
                wall += int(on_wall.sum())
                keep &= ~on_wall
            values.append(depth[keep].detach().to("cpu", torch.float32))
        n = sum(v.numel() for v in values)
        if n == 0:
            where = "off the background wall " if objects else ""
            raise ValueError(f"no valid pixel {where}in the training data: no median depth to predict")
        every = torch.cat(values)  # [n]
        lower = every.kthvalue((n + 1) // 2).values.double()  # 1-based ranks of the two middle values
        upper = every.kthvalue(n // 2 + 1).values.double()
        self.depth_m.fill_((lower + upper) / 2)
        self.n_pixels.fill_(n)
        fitted = {"depth_m": float(self.depth_m), "pixels": float(n)}
        return {**fitted, "wall_pixels_left_out": float(wall)} if objects else fitted

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        """The fitted depth on every pixel of the reference frame.  # [B, 1, H, W] float32

        Raises:
            RuntimeError: the model is not fitted (``dfdgen train --model constant`` fits it).
        """
        self.check_frames(frames, focus_m, K, min_frames=1)
        if not self.fitted:
            raise RuntimeError("model 'constant' is not fitted: fit it on training data first "
                               "(dfdgen train --model constant), or load a checkpoint of a fitted one")
        b, _, _, h, w = frames.shape
        return self.depth_m.to(device=frames.device, dtype=torch.float32).expand(b, 1, h, w).clone()


@register
class DepthFromFocus(ReferenceModel):
    """Classical depth from focus: the sharpest frame per pixel, refined in diopters; nothing to fit.

    :func:`dfd_models.focus.dff_depth_and_confidence` (module docstring). Any T >= 1 (T < 3: the
    sharpest frame's focus distance, no refinement; T = 1: that frame's focus distance everywhere).

    Config: :class:`DFFConfig`.
    """

    name = "dff"
    supervised = False
    Config = DFFConfig
    config: DFFConfig

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        return self.predict_with_confidence(frames, focus_m, lens, K)[0]

    def predict_with_confidence(self, frames: Tensor, focus_m: Tensor, lens: LensParams,
                                K: Tensor) -> tuple[Tensor, Tensor]:
        """Depth and confidence of :func:`dfd_models.focus.dff_depth_and_confidence`.  # [B, 1, H, W] each"""
        self.check_frames(frames, focus_m, K, min_frames=1)
        cfg = self.config
        depth, confidence = dff_depth_and_confidence(
            frames.float(), focus_m.float(), K.float(), ref=reference_index(frames.shape[1]), beyond_range=cfg.beyond_range,
            lens=None if lens is None else lens.to(dtype=torch.float32), min_depth_m=cfg.min_depth_m,
            max_depth_m=cfg.max_depth_m)
        return depth.float(), confidence.float()


@register
class DefocusSweep(ReferenceModel):
    """Depth from defocus by a re-rendering sweep over fronto-parallel planes; nothing to fit.

    :func:`dfd_models.networks.sdgs.sweep_teacher` on the reference frame's grid with ``sdgs``'s defaults
    (:class:`~dfd_models.networks.sdgs.SDGSConfig`'s: depth range, sweep footprint and hypotheses,
    splat size, photometric encoding), the teacher sdgs trains with. T >= 2. No config keys.
    """

    name = "dfd_sweep"
    supervised = False
    min_frames = 2
    reads_defaults_of = (SDGSConfig,)

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        return self.predict_with_confidence(frames, focus_m, lens, K)[0]

    def predict_with_confidence(self, frames: Tensor, focus_m: Tensor, lens: LensParams,
                                K: Tensor) -> tuple[Tensor, Tensor]:
        """The sweep's depth and its confidence: sdgs's teacher (:func:`dfd_models.networks.sdgs.sweep_teacher`)."""
        self.check_frames(frames, focus_m, K, min_frames=self.min_frames)
        return sweep_teacher(SDGSConfig(), frames.float(), focus_m.float(), K.float(),
                             lens.to(dtype=torch.float32), reference_index(frames.shape[1]))
