"""Pieces shared by the supervised baselines (``ddff``, ``lstm_ddff``, ``recurrent_ae``, ``defocusnet``).

:class:`SupervisedDepthModel` is a :class:`DepthModel` trained on ground-truth
depth, as in the video depth-from-defocus work these baselines come from:

    depth   squared error of depth normalised by max_depth_m, (z_pred - z_true)^2 / D^2
            (``depth_space: "linear"``) or |log z_pred - log z_true| (``"log"``), averaged
            over valid pixels (true depth > 0) as config ``regions`` says (below)
    coc     with config ``coc_head``: |c_pred - c_true| / coc_scale_px (``coc_loss:
            "l1"``) or its square (``"mse"``), averaged over the same pixels of every
            frame, c the unsigned CoC diameter in pixels of each frame
            (outputs["coc"] [B, T, 1, H, W])
    total   depth + w_coc coc

Config ``regions`` chooses the pixels of the averages and their weights, using the
batch's background-wall mask ``wall`` [B, 1, H, W] bool (a batch without it
averages all valid pixels, whatever the choice):

    "balanced"  the mean of two region means over the batch, objects
                (valid & ~wall) weighted 1 and wall (valid & wall) ``wall_weight``:
                (L_objects + w L_wall) / (1 + w), an empty region left out
                (:func:`dfd_models.losses.region_mean`). The wall fills ~93 % of a
                small_obj frame: a plain mean is ruled by it and the objects, what
                depth from defocus is about, are learnt last; left out, the wall
                is never learnt and no model predicts the whole frame
    "objects"   (default) the mean over valid & ~wall (the thesis's masking; deprecated
                config ``mask_wall: true``): the best on objects on validation at the
                pages' budgets (docs/NOTES.md: which pixels the supervised losses see)
    "all"       the mean over every valid pixel (``mask_wall: false``)
    "split"     the network's own depth learns the objects ("objects"), and a small
                :class:`WallHead` over the whole stack learns where the wall is (a
                cross-entropy on ``wall``, the two regions' means weighted equally) and
                its depth (on wall pixels); the output is the wall head's depth where it
                sees the wall, the network's elsewhere. Depth from defocus tells little
                beyond the focus sweep, where the wall lies: one output trained on both
                regions settles on one compromise depth (log L1 is flat between the two
                regions' medians at equal weights) and learns neither in 500 steps

    Losses with "split": depth (objects) + wall_depth (wall pixels) + wall_mask (the
    cross-entropy) [+ w_coc coc on the objects].

The true CoC (:meth:`SupervisedDepthModel.coc_target`) is the renderer's per-frame
CoC map ``batch["coc"]`` when the shards hold one (exact: each frame's own pixel
grid); otherwise it is computed with :func:`dfd_models.lens.coc_px` from the depth
of the reference frame, the frame's focus distance and the batch's lens.
That is exact for the ``blender`` lens model (K is the same for every frame) and an
approximation for ``thin_lens``, whose focus breathing scales frame t's image about
the principal point by L_t / L_ref (L the lens-to-sensor distance): a pixel at
radius r from the centre is off by |1 - L_t / L_ref| r, a fraction of a pixel near
the centre and up to a pixel or two at the border of a 256 px crop with a 50 mm
lens at 0.3-2 m, where the CoC is also smooth in all but depth edges.

Depth outputs are bounded: a network outputs a logit y and z = depth_from_logit(y)
lies in [min_depth_m, max_depth_m] whatever the weights. Config ``depth_space``
chooses the map and the depth loss together:

    "linear"  z = min + (max - min) sigmoid(y); loss MSE of z / max_depth_m (the
              thesis's; with a bounded *inverse* depth the far wall sits where the
              sigmoid is flat and training drove every pixel onto the far bound,
              measured on the tiny dataset, while the linear map keeps typical
              depths mid-range)
    "log"     z = min (max / min)^sigmoid(y); loss mean |log z_pred - log z_true|,
              a relative error like the AbsRel and delta1 the tables score. Where
              the range spans decades (fod500: objects 0.15-2.7 m, focus
              0.1-1.5 m) the linear MSE is ruled by the far pixels, whose blur
              barely changes with depth, and the linear map squeezes the near
              focus planes into the sigmoid's flat tail. The log term is 10-100x
              the normalised MSE, so ``w_coc`` and the learning rate weigh
              differently against it: "log" changes the map, the norm and the
              balance of the terms together

:class:`Encoder` and :class:`Decoder` are the two halves of a VGG-style U-Net
(:class:`dfd_models.networks.blocks.ConvBlock` per level, 2 x 2 max-pooling), split
so a model can run the encoder per frame, combine its features across the stack,
and attach several decoders (depth, CoC) to the same features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.core.lens import LENS_MODELS
from generator.core.schema import setting
from dfd_models.config import ConfigError
from dfd_models.focus import blur_features
from dfd_models.lens import LensParams, coc_px
from dfd_models.losses import masked_mean, region_mean
from dfd_models.networks.base import BLUR_SCALES, DepthModel, DepthRangeConfig, ModelConfig, lens_from_batch
from dfd_models.networks.blocks import ConvBlock, focus_vote, zero_head

__all__ = ["COC_LOSSES", "DEPTH_SPACES", "REGIONS", "Decoder", "Encoder", "SupervisedConfig", "SupervisedDepthModel"]

#: Values of config ``coc_loss``: the per-pixel error of the normalised CoC.
COC_LOSSES = ("l1", "mse")
#: Values of config ``depth_space``: the depth map of the output logit and its loss (module docstring).
DEPTH_SPACES = ("linear", "log")
#: Values of config ``regions``: the pixels the losses average over and their weights (module docstring).
REGIONS = ("balanced", "objects", "all", "split")


class Encoder(nn.Module):
    """VGG-style encoder: ``len(channels)`` levels of :class:`ConvBlock`, 2 x 2 max-pooling between them.

    Args:
        in_channels: input channels C_in.
        channels: features per level, full size first (level k at 1/2^k of the input size).
    Shapes:
        [N, C_in, H, W] -> list of [N, channels[k], H / 2^k, W / 2^k], k = 0 .. levels - 1
    """

    def __init__(self, in_channels: int, channels: Sequence[int]):
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {list(channels)}")
        self.channels = tuple(channels)
        widths = (in_channels,) + self.channels
        self.blocks = nn.ModuleList(ConvBlock(widths[k], widths[k + 1]) for k in range(len(channels)))

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2^(levels - 1)."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for k, block in enumerate(self.blocks):
            x = block(x if k == 0 else F.max_pool2d(x, 2))  # [N, channels[k], H / 2^k, W / 2^k]
            features.append(x)
        return features


class Decoder(nn.Module):
    """U-Net decoder matching an :class:`Encoder` with the same ``channels``.

    From the deepest features up: nearest x 2 upsampling, concatenation with the
    skip of that level, a :class:`ConvBlock`; a 1 x 1 convolution maps the full-size
    features to ``out_channels``. The 1 x 1 convolution starts at zero, so an
    untrained decoder outputs zeros (heads built on it start at their neutral value).

    Args:
        channels: the encoder's features per level, full size first.
        out_channels: output channels C_out.
    Shapes:
        list of [N, channels[k], H / 2^k, W / 2^k] -> [N, C_out, H, W]
    """

    def __init__(self, channels: Sequence[int], out_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConvBlock(channels[k] + channels[k - 1], channels[k - 1]) for k in range(len(channels) - 1, 0, -1)
        )
        self.head = zero_head(channels[0], out_channels)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        skips = list(features)
        x = skips.pop()
        for block in self.blocks:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips.pop()], 1))
        return self.head(x)


class WallHead(nn.Module):
    """Where the background wall is, and its depth, from the whole stack (config ``regions: split``).

    Input per frame: linear RGB, the frame's focus plane and its blur features at
    :data:`WALL_BLUR_SCALES_PX`; their mean and maximum over the frames (any T) go through a
    two-level U-Net (:class:`Encoder`, :class:`Decoder`, widths ``channels``).

    Shapes:
        [B, T, C, H, W] -> (wall logit [B, 1, H, W], depth logit [B, 1, H, W]); H, W even
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (16, 32)):
        super().__init__()
        # one U-Net each: sharing one, the wall's depth term (large at the start) kept the mask from learning
        self.mask = nn.Sequential(Encoder(2 * in_channels, channels), Decoder(channels, 1))
        self.depth = nn.Sequential(Encoder(2 * in_channels, channels), Decoder(channels, 1))

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([inputs.mean(1), inputs.amax(1)], 1)
        return self.mask(x), self.depth(x)


#: Blur-feature scales (Gaussian std, px) of the wall head's input.
WALL_BLUR_SCALES_PX = [0.5, 1.0, 2.0, 4.0]


@dataclass(frozen=True, kw_only=True)
class SupervisedConfig(DepthRangeConfig):
    """The config keys every supervised baseline shares (module docstring); the depth range, metres,
    is :class:`~dfd_models.networks.base.DepthRangeConfig`'s (the bound of the output).

    Attributes:
        depth_space: one of :data:`DEPTH_SPACES`: the output's depth map and the depth loss.
        coc_head: predict each frame's CoC with an extra decoder, supervised by the true CoC.
        coc_scale_px: CoC normaliser, pixels (c = coc_scale_px softplus(y); loss on c / it).
        coc_loss: one of :data:`COC_LOSSES`, the error of the normalised CoC.
        w_coc: weight of the CoC term in the total, >= 0.
        regions: one of :data:`REGIONS`: the pixels the depth and CoC losses average over and
            their weights.
        wall_weight: weight of the wall's mean against the objects' (1) under ``balanced``, > 0.
        depth_init_m: the depth an untrained network predicts, metres, inside (min_depth_m,
            max_depth_m) (a learned shift of every pixel's logit); null: the logit 0's.
        blur_scales_px: Gaussian stds (pixels, > 0) of the parameter-free blur features
            (:func:`dfd_models.focus.blur_features`, sdgs's single-image cue) given to every
            frame as extra input channels; [] (the papers' input): none.

    The deprecated key ``mask_wall`` of older configs and checkpoints is read as ``regions``
    (:meth:`SupervisedDepthModel.resolve_config`); a config never holds it.
    """

    depth_space: str = setting("linear", choices=DEPTH_SPACES)
    coc_head: bool = setting(False)
    coc_scale_px: float = setting(8.0, gt=0)
    coc_loss: str = setting("l1", choices=COC_LOSSES)
    w_coc: float = setting(1.0, ge=0)
    regions: str = setting("objects", choices=REGIONS)
    wall_weight: float = setting(1.0, gt=0)
    depth_init_m: float | None = setting(None, gt=0)
    blur_scales_px: list[float] = setting([], **BLUR_SCALES)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth_init_m is not None and not self.min_depth_m < self.depth_init_m < self.max_depth_m:
            raise ConfigError("model.config.depth_init_m", self.depth_init_m,
                              f"null or a depth inside ({self.min_depth_m}, {self.max_depth_m}) m")


class SupervisedDepthModel(DepthModel):
    """A depth network trained on true depth (and optionally true CoC); see the module docstring.

    Subclasses implement :meth:`stack_forward` (outputs ``depth`` [B, 1, H, W] metres and,
    with ``coc_head``, ``coc`` [B, T, 1, H, W] pixels) and declare their :attr:`Config` as a
    subclass of :class:`SupervisedConfig`. :meth:`forward` may read only ``frames``,
    ``focus_m`` and ``K`` of the batch (and the lens fields), so :meth:`predict` works on
    images alone. Any T >= 1 works (T = 1: a stack of one frame, as ``dfdgen predict`` gives).
    """

    supervised = True
    min_frames = 1
    Config = SupervisedConfig
    config: SupervisedConfig

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any] | ModelConfig | None = None) -> SupervisedConfig:
        """:meth:`DepthModel.resolve_config`, with the deprecated ``mask_wall`` of configs and
        checkpoints written before ``regions`` read as ``regions``: true "objects", false "all",
        null (what completed configs of that time hold) nothing.

        Raises:
            ConfigError: as :meth:`DepthModel.resolve_config`; ``mask_wall`` not true, false or
                null, or given beside a ``regions`` it contradicts.
        """
        if not isinstance(config, Mapping) or "mask_wall" not in config:
            return super().resolve_config(config)
        data = dict(config)
        mask_wall = data.pop("mask_wall")
        if mask_wall is not None and not isinstance(mask_wall, bool):
            raise ConfigError("model.config.mask_wall", mask_wall, "true or false (deprecated: use regions)")
        if mask_wall is not None:
            alias, flag = ("objects" if mask_wall else "all"), str(mask_wall).lower()
            if data.setdefault("regions", alias) != alias:
                raise ConfigError("model.config.regions", data["regions"],
                                  f"{alias!r}, as the deprecated mask_wall {flag} beside it says: set regions alone")
            warnings.warn(f"model config mask_wall is deprecated: mask_wall {flag} is regions {alias!r}",
                          DeprecationWarning, stacklevel=3)
        return super().resolve_config(data)

    def __init__(self, config: Mapping[str, Any] | SupervisedConfig | None = None):
        super().__init__(config)
        if self.config.regions == "split":
            self.wall_head = WallHead(4 + len(WALL_BLUR_SCALES_PX))
        if self.config.depth_init_m is not None:
            # a learned shift of every pixel's logit, starting where a zero logit means depth_init_m
            self.logit_shift = nn.Parameter(self.depth_logit(torch.tensor(float(self.config.depth_init_m))).detach())

    def forward(self, batch: dict) -> dict[str, Tensor]:
        """:meth:`stack_forward`, and with ``regions: split`` the wall head: ``object_depth`` (the
        network's), ``wall_logit``, ``wall_depth`` and ``depth`` (the wall's where its logit > 0)."""
        outputs = self.stack_forward(batch)
        if self.config.regions != "split":
            return outputs
        frames, focus = batch["frames"].float(), batch["focus_m"].float()
        inputs = torch.cat([frames, self.focus_planes(focus, *frames.shape[-2:]),
                            blur_features(frames.flatten(0, 1), WALL_BLUR_SCALES_PX).unflatten(0, frames.shape[:2])],
                           2)  # [B, T, 4 + scales, H, W]
        wall_logit, depth_logit = self.wall_head(inputs)
        wall_depth = self.depth_from_logit(depth_logit)
        return {**outputs, "object_depth": outputs["depth"], "wall_logit": wall_logit, "wall_depth": wall_depth,
                "depth": torch.where(wall_logit > 0, wall_depth, outputs["depth"])}

    def stack_forward(self, batch: dict) -> dict[str, Tensor]:
        """The network's outputs (module docstring), subclasses implement it."""
        raise NotImplementedError

    def depth_from_logit(self, logit: Tensor) -> Tensor:
        """Depth z, metres, in [min_depth_m, max_depth_m]: min + (max - min) sigmoid(y), or
        min (max / min)^sigmoid(y) with ``depth_space: "log"``.  # shape of y"""
        near, far = self.config.min_depth_m, self.config.max_depth_m
        if hasattr(self, "logit_shift"):
            logit = logit + self.logit_shift
        t = torch.sigmoid(logit.float())
        if self.config.depth_space == "log":
            return near * (far / near) ** t
        return near + (far - near) * t

    def focus_weighted_logit(self, out: Tensor, focus_m: Tensor) -> Tensor:
        """DDFF's stack combination (:func:`~dfd_models.networks.blocks.focus_vote`) with the
        frames' focus distances as priors: y = sum_t softmax_t(s_t) (logit(F_t) + v_t).

        Args:
            out: [s_t, v_t] per frame.  # [B, T, 2, H, W]
            focus_m: focus distances, metres.  # [B, T]
        Returns:
            the depth logit y.  # [B, 1, H, W]
        """
        return focus_vote(out, self.depth_logit(focus_m.float())[:, :, None, None, None])

    def depth_logit(self, depth_m: Tensor) -> Tensor:
        """The inverse of :meth:`depth_from_logit`, depth clamped into the range first.  # shape of depth_m"""
        near, far = self.config.min_depth_m, self.config.max_depth_m
        z = depth_m.clamp(near, far)
        if self.config.depth_space == "log":
            logit = torch.logit(torch.log(z / near) / math.log(far / near), eps=1e-3)
        else:
            logit = torch.logit((z - near) / (far - near), eps=1e-3)
        return logit - self.logit_shift if hasattr(self, "logit_shift") else logit

    def coc_from_logit(self, logit: Tensor) -> Tensor:
        """Unsigned CoC c = coc_scale_px softplus(y), pixels, >= 0.  # shape of y"""
        return self.config.coc_scale_px * F.softplus(logit.float())

    def focus_planes(self, focus_m: Tensor, height: int, width: int) -> Tensor:
        """Each frame's focus distance as a constant image channel: its normalised inverse
        (1/F - 1/max) / (1/min - 1/max), 0 at max_depth_m, 1 at min_depth_m.

        Args:
            focus_m: focus distance F, metres.  # [B, T]
        Returns:
            the channel per frame.  # [B, T, 1, H, W]
        """
        inv_near, inv_far = 1 / self.config.min_depth_m, 1 / self.config.max_depth_m
        code = (1 / focus_m - inv_far) / (inv_near - inv_far)  # [B, T]
        return code[:, :, None, None, None].expand(*focus_m.shape, 1, height, width)

    @property
    def focus_input(self) -> bool:
        """Whether :meth:`frame_inputs` carries the focus plane (always, but in DefocusNet's CoC stage)."""
        return True

    @property
    def frame_channels(self) -> int:
        """Channels of :meth:`frame_inputs`: RGB, the focus plane, the blur features."""
        return 3 + int(self.focus_input) + len(self.config.blur_scales_px)

    def frame_inputs(self, frames: Tensor, focus_m: Tensor) -> Tensor:
        """Every frame with its :meth:`focus_planes` channel (when :attr:`focus_input`) and, with
        config ``blur_scales_px``, its :meth:`blur_cues`: the per-frame network input.

        Args:
            frames: linear RGB.  # [B, T, 3, H, W]
            focus_m: focus distances, metres.  # [B, T]
        Returns:
            the per-frame network input.  # [B, T, frame_channels, H, W]
        """
        focus = [self.focus_planes(focus_m, *frames.shape[-2:]).to(frames.dtype)] if self.focus_input else []
        return torch.cat([frames, *focus, *self.blur_cues(frames)], 2)

    def blur_cues(self, frames: Tensor) -> list[Tensor]:
        """The parameter-free focus-measure features of every frame
        (:func:`dfd_models.focus.blur_features` at config ``blur_scales_px``); [] without scales.

        Args:
            frames: linear RGB.  # [B, T, 3, H, W]
        Returns:
            [] or one tensor.  # [B, T, len(blur_scales_px), H, W]
        """
        scales = self.config.blur_scales_px
        if not scales:
            return []
        return [blur_features(frames.flatten(0, 1), scales).unflatten(0, frames.shape[:2])]

    def loss_regions(self, batch: dict) -> tuple[list[Tensor], list[float]]:
        """The pixel regions of the reference frame the losses average over, and their weights
        (config ``regions``, module docstring): with the batch's ``wall``, "objects" is
        [valid & ~wall], "all" [valid], "balanced" [valid & ~wall, valid & wall] weighted
        [1, wall_weight]; without it, [valid] for all three.

        Returns:
            (masks, each [B, 1, H, W] bool; one weight per mask).
        """
        valid = batch["valid"].bool()
        regions = self.config.regions
        if "wall" not in batch or regions == "all":
            return [valid], [1.0]
        wall = batch["wall"].bool()
        if regions in ("objects", "split"):
            return [valid & ~wall], [1.0]
        return [valid & ~wall, valid & wall], [1.0, float(self.config.wall_weight)]

    def coc_target(self, batch: dict) -> Tensor:
        """True unsigned CoC of every frame, pixels (module docstring: source and approximation).

        Returns:
            c, 0 where the depth is invalid.  # [B, T, 1, H, W]
        """
        if "coc" in batch:
            return batch["coc"].float().abs()
        depth, focus = batch["depth"].float(), batch["focus_m"].float()  # [B, 1, H, W], [B, T]
        z = torch.where(depth > 0, depth, torch.full_like(depth, self.config.max_depth_m))
        lens = lens_from_batch(batch).to(dtype=torch.float32)
        width = batch["frames"].shape[-1]
        coc = torch.stack([coc_px(lens, z[:, 0], focus[:, t], width) for t in range(focus.shape[1])], 1)
        return (coc * (depth > 0)[:, :1]).unsqueeze(2)  # [B, T, 1, H, W]

    def losses(self, batch: dict, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.config
        masks, weights = self.loss_regions(batch)  # each [B, 1, H, W]
        split = cfg.regions == "split"
        terms = {"depth": region_mean(self.depth_error(outputs["object_depth" if split else "depth"], batch),
                                      masks, weights)}
        total = terms["depth"]
        if split:
            valid = batch["valid"].bool()
            wall = batch["wall"].bool() if "wall" in batch else torch.zeros_like(valid)
            terms["wall_depth"] = masked_mean(self.depth_error(outputs["wall_depth"], batch), valid & wall)
            bce = F.binary_cross_entropy_with_logits(outputs["wall_logit"].float(), wall.float(), reduction="none")
            terms["wall_mask"] = region_mean(bce, [valid & ~wall, valid & wall])
            total = total + terms["wall_depth"] + terms["wall_mask"]
        if cfg.coc_head:
            err = (outputs["coc"] - self.coc_target(batch)) / cfg.coc_scale_px  # [B, T, 1, H, W]
            err = err.abs() if cfg.coc_loss == "l1" else err.square()
            terms["coc"] = region_mean(err, [m[:, None] for m in masks], weights)
            total = total + cfg.w_coc * terms["coc"]
        terms["total"] = total
        return terms

    def depth_error(self, pred: Tensor, batch: dict) -> Tensor:
        """Per-pixel depth error of ``pred`` against the batch's depth: |log z_pred - log z_true|
        (``depth_space: "log"``) or ((z_pred - z_true) / max_depth_m)^2.  # [B, 1, H, W]"""
        true = batch["depth"].float()
        if self.config.depth_space == "log":
            near = self.config.min_depth_m  # clamps invalid 0 (masked) and depths below the range
            return (pred.clamp_min(near).log() - true.clamp_min(near).log()).abs()
        return ((pred - true) / self.config.max_depth_m).square()

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        """Depth of the reference frame from the frames alone (:meth:`forward` on a batch of them), T >= 1."""
        self.check_frames(frames, focus_m, K, min_frames=1)
        b = frames.shape[0]

        def field(x: Tensor) -> Tensor:
            return x.to(frames.device).expand(b)

        batch = {
            "frames": frames,
            "focus_m": focus_m,
            "K": K,
            "lens_model": torch.full((b,), LENS_MODELS.index(lens.model), dtype=torch.long),
            "focal_length_m": field(lens.focal_length_m),
            "f_number": field(lens.f_number),
            "pixel_pitch_m": field(lens.pixel_pitch_m(frames.shape[-1])),
        }
        return self(batch)["depth"]

