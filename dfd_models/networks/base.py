"""The contract between depth networks and the trainer, and the model registry.

A trainer, evaluator or CLI knows a model only through :class:`DepthModel` and
:func:`build_model`; adding a network means one new module with a class that
subclasses :class:`DepthModel` and is decorated with :func:`register` (and one
import line in :mod:`dfd_models.networks`). Nothing here knows any particular
network.

A training step, whatever the model::

    model = build_model("sdgs", {"min_depth_m": 0.2})   # unknown name, key or value: ConfigError
    outputs = model(batch)                    # batch from dfd_models.data.make_loader
    terms = model.losses(batch, outputs)      # scalar tensors, terms["total"] is optimised
    terms["total"].backward()

and inference on images only (no ground truth, no loader)::

    depth = model.predict(frames, focus_m, lens, K)   # [B, 1, H, W] metres

The batch is a :class:`dfd_models.data.batch.Batch` (``frames`` [B, T, 3, H, W] linear
RGB sorted by focus, ``focus_m`` [B, T], ``K`` [B, T, 3, 3], ``depth``/``valid``
[B, 1, H, W] of the reference frame, :func:`~dfd_models.data.batch.reference_index`,
lens fields [B]).

Models that are not trained (``trainable = False``: the reference predictors of
:mod:`dfd_models.networks.reference`, which have no parameters) take no step.
The trainer builds no optimizer for them and never calls :meth:`~DepthModel.forward`
or :meth:`~DepthModel.losses`; it calls ``model.fit(batches)`` once, with one
pass over the training split, and saves the model's state_dict (what ``fit``
set lives in buffers) as an ordinary checkpoint at step 0, which
``dfd_models.checkpoint.load_model`` rebuilds like any other::

    model = build_model("constant")
    model.fit(batches)                       # e.g. the median training depth
    depth = model.predict(frames, focus_m, lens, K)

Their ``forward`` is ``{"depth": predict(...)}`` on a batch and their ``losses``
raises ``NotImplementedError``.

A model's own config (``model.config`` of a training config) is its :attr:`DepthModel.Config`:
a frozen dataclass (a subclass of :class:`ModelConfig`) whose fields are declared with
:func:`generator.core.schema.setting`, bounds and choices beside the default, as the recipe's
sections are. :meth:`DepthModel.resolve_config` builds it from plain data with the training
config's errors (``config key 'model.config.KEY': got VALUE; ALLOWED``, exit status 2); the
rules between fields are its ``__post_init__``. A model reads ``self.config.KEY``; checkpoints
and ``config.yaml`` hold ``dataclasses.asdict(model.config)``, which rebuilds it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from generator.core.lens import LENS_MODELS
from generator.core.schema import build, setting
from dfd_models.config import ConfigError
from dfd_models.data.batch import Batch
from dfd_models.lens import LensParams

__all__ = ["MODELS", "DepthModel", "DepthRangeConfig", "ModelConfig", "build_model", "default_settings", "lens_from_batch",
           "register", "saved_model_config"]

#: Widest layer a model config may ask for, channels or units: 8x the widest default (64
#: channels, 128 LSTM units). A 3x3 convolution of 1024 to 1024 channels holds 38 MB of float32
#: weights; a checkpoint's config (user input) asking for 10^5 would allocate 360 GB before a
#: weight is read.
MAX_WIDTH = 1024
#: Most items of a model config's list of widths or of blur scales: levels of a network (each
#: halves the image; 10 levels need sizes divisible by 512), or blur scales (an input channel each).
MAX_LEVELS = 10
#: :func:`generator.core.schema.setting` checks of a list of layer widths, channels, one per level.
WIDTHS = {"ge": 1, "le": MAX_WIDTH, "min_items": 1, "max_items": MAX_LEVELS}
#: :func:`generator.core.schema.setting` checks of a list of blur scales (Gaussian stds, pixels).
BLUR_SCALES = {"gt": 0, "max_items": MAX_LEVELS}


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The base of every model's config (:attr:`DepthModel.Config`): no keys of its own.

    A subclass declares each key as a field with :func:`generator.core.schema.setting`
    (default, bounds, choices) and its unit in its docstring; a rule between keys goes in
    ``__post_init__`` and raises :class:`~dfd_models.config.ConfigError` naming the key.
    Every key that sets a layer's size is bounded (:data:`WIDTHS`), so a config (a
    checkpoint's is user input) cannot make the model allocate more than a few GB.
    """


@dataclass(frozen=True, kw_only=True)
class DepthRangeConfig(ModelConfig):
    """The depth range of a model's output, declared once for every model that has one.

    Attributes:
        min_depth_m, max_depth_m: the nearest and farthest depth predicted, metres;
            0 < min_depth_m < max_depth_m.
    """

    min_depth_m: float = setting(0.1, gt=0)
    max_depth_m: float = setting(3.0, gt=0)

    def __post_init__(self) -> None:
        if not self.min_depth_m < self.max_depth_m:
            raise ConfigError("model.config.max_depth_m", self.max_depth_m,
                              f"a depth above min_depth_m = {self.min_depth_m} m")


class DepthModel(nn.Module, abc.ABC):
    """A depth network the generic trainer can build, train, evaluate and run.

    Class attributes:
        name: the registry name (``--model NAME``).
        supervised: whether :meth:`losses` reads ground truth (``batch["depth"]``,
            ``batch["valid"]``, ``aif``, ``coc``). False means those keys are never
            read by :meth:`forward` or :meth:`losses`; they may be absent.
        size_multiple: image height and width must be multiples of this (the
            encoder's total downsampling); any batch size and any such size work,
            nothing about them is baked into layers. A model whose depth depends on
            its config sets it per instance (read ``model.size_multiple``).
        min_frames: the fewest frames T :meth:`forward` accepts in a training batch
            (:meth:`predict` may accept fewer; see the subclass).
        trainable: False for a model with nothing to optimise, which the trainer
            fits (:meth:`fit`) instead of training (module docstring).
        Config: the model's config class (a :class:`ModelConfig`; this base's has no keys).
        reads_defaults_of: other config classes whose defaults the model's predictions use
            (``dfd_sweep``: sdgs's teacher settings); with :attr:`Config`'s, what a run depends on
            beyond its command (:func:`default_settings`).
        saved_before: config keys added with a default that changed what the model is, and the
            value every model saved before them had: a checkpoint's config (always complete when
            written) that lacks such a key was that model, so it is rebuilt with that value, not
            today's default (:func:`saved_model_config`).

    ``self.config`` is the complete configuration, a ``Config`` (its defaults with the
    values given): save ``dataclasses.asdict(model.config)`` with every checkpoint and
    rebuild with ``build_model(model.name, model.config)`` (the plain data or the instance).

    Outputs are float32 (a model casts back from autocast where it matters) and
    lengths are metres. Depth outputs are planar depth (camera z, DESIGN.md
    section 2), strictly positive everywhere (models predict a bounded depth),
    and aligned with the pixel grid of the stack's reference frame, the frame
    whose ground truth the loader returns
    (:func:`~dfd_models.data.batch.reference_index`: T // 2).
    """

    name: ClassVar[str]
    supervised: ClassVar[bool]
    size_multiple: ClassVar[int] = 1
    min_frames: ClassVar[int] = 1
    trainable: ClassVar[bool] = True
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    reads_defaults_of: ClassVar[tuple[type[ModelConfig], ...]] = ()
    saved_before: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Mapping[str, Any] | ModelConfig | None = None):
        super().__init__()
        self.config = self.resolve_config(config)

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any] | ModelConfig | None = None) -> ModelConfig:
        """The model's :attr:`Config` from ``config``: plain data (keys left out take their
        defaults; an int for a float is accepted) or a config instance, checked either way.

        Raises:
            ConfigError: a key that is not one of :attr:`Config`'s (naming them), a value of
                the wrong type, out of its bounds or not one of its choices, or keys that
                break a rule between them; the key path is ``model.config.KEY``.
        """
        data = dataclasses.asdict(config) if isinstance(config, ModelConfig) else config
        return build(cls.Config, {} if data is None else data, ConfigError, "model.config")

    @abc.abstractmethod
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Training forward pass on a loader batch.

        Returns:
            Tensors; always ``"depth"`` [B, 1, H, W] metres (the reference frame's grid),
            plus what :meth:`losses` needs (model-specific keys).
        """

    @abc.abstractmethod
    def losses(self, batch: Batch, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss terms of one step: scalar tensors by name, ``"total"`` the one to minimise.

        The other terms are for logging (unweighted, so comparable across configs);
        ``"total"`` is their weighted sum.
        """

    @abc.abstractmethod
    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        """Depth from images alone (inference; no ground truth is read).

        Does not change train/eval mode and does not disable autograd: wrap it in
        ``model.eval()`` and ``torch.no_grad()`` as usual.

        Args:
            frames: linear RGB, sorted by focus distance.  # [B, T, 3, H, W]
            focus_m: focus distance of each frame, metres.  # [B, T]
            lens: the lens; for cropped images its pixel pitch must be the sensor's
                (see :func:`lens_from_batch`).
            K: intrinsics of each frame, pixels.  # [B, T, 3, 3]
        Returns:
            planar depth of the reference frame, metres, > 0.  # [B, 1, H, W]
        """

    def predict_with_confidence(self, frames: Tensor, focus_m: Tensor, lens: LensParams,
                                K: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`predict`'s depth and, where the model has one, a confidence in [0, 1] on the same
        grid (1 = sure; None for a model without one, this default).  # [B, 1, H, W] each"""
        return self.predict(frames, focus_m, lens, K), None

    def fit(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Set a model that is not trained (``trainable`` False) from the training data.

        The trainer calls it once, in place of the optimisation loop, with one pass
        over the training split: loader batches (CPU tensors, full frames, no flips),
        produced lazily, so a model reads only what it uses; this default, for a
        model with nothing to fit, reads none. Trainable models are never fitted.

        Returns:
            what was fitted, as named numbers for the trainer's log line.
        Raises:
            ValueError: the data cannot fit the model (e.g. no valid pixel).
        """
        return {}

    def check_frames(self, frames: Tensor, focus_m: Tensor, K: Tensor, *, min_frames: int) -> None:
        """Raise ValueError unless frames [B, T, 3, H, W], focus_m [B, T], K [B, T, 3, 3] fit together,
        T >= ``min_frames`` and H, W are multiples of :attr:`size_multiple`."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        b, t, _, h, w = frames.shape
        if focus_m.shape != (b, t) or K.shape != (b, t, 3, 3):
            raise ValueError(
                f"focus_m must be [B, T] = {(b, t)} and K [B, T, 3, 3], "
                f"got {tuple(focus_m.shape)} and {tuple(K.shape)}"
            )
        if t < min_frames:
            raise ValueError(f"model {self.name!r} needs at least {min_frames} frames per stack, got T = {t}")
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(f"model {self.name!r} needs height and width divisible by {m}, got {h} x {w}")


#: Registry: model name -> class. Filled by :func:`register` when the network modules are imported.
MODELS: dict[str, type[DepthModel]] = {}


def register(cls: type[DepthModel]) -> type[DepthModel]:
    """Class decorator: add a :class:`DepthModel` subclass to :data:`MODELS` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, DepthModel)):
        raise TypeError(f"only DepthModel subclasses can be registered, got {cls!r}")
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} is already registered by {MODELS[cls.name].__qualname__}")
    MODELS[cls.name] = cls
    return cls


def build_model(name: str, config: Mapping[str, Any] | ModelConfig | None = None) -> DepthModel:
    """A new model ``name`` with its default config updated by ``config`` (plain data or a config).

    Raises:
        ConfigError: unknown name (naming the registered ones), or a config key or value
            the model does not take (see :meth:`DepthModel.resolve_config`).
    """
    if name not in MODELS:
        raise ConfigError("model.name", name, f"one of the registered models: {', '.join(sorted(MODELS))}")
    return MODELS[name](config)


def lens_from_batch(batch: Batch) -> LensParams:
    """The batch's lens as :class:`LensParams` with fields [B], for the batch's image width.

    A crop spans less than the full sensor: CoC in pixels after a crop is CoC in
    metres / ``pixel_pitch_m``, not / (the full sensor's width / crop width). So the
    returned ``sensor_width_m`` is the width the crop spans on the sensor, ``pixel_pitch_m * W`` (W = ``frames.shape[-1]``), which
    makes ``LensParams.pixel_pitch_m(W)`` and every ``dfd_models.lens`` function
    called with ``width_px=W`` right for the crop. (``dfd_models.lens.intrinsics``
    would still put the principal point at the crop's centre: use ``batch["K"]``.)

    Raises:
        ValueError: the batch mixes lens models (one :class:`LensParams` has one).
    """
    models = torch.as_tensor(batch["lens_model"]).reshape(-1).unique().tolist()
    if len(models) != 1:
        raise ValueError(f"a batch must hold one lens model, got {[LENS_MODELS[m] for m in models]}")
    frames = batch["frames"]  # [B, T, 3, H, W]
    dtype, device = frames.dtype, frames.device

    def field(key: str) -> Tensor:
        return torch.as_tensor(batch[key]).to(device=device, dtype=dtype).reshape(-1)  # [B]

    return LensParams(
        LENS_MODELS[models[0]],
        focal_length_m=field("focal_length_m"),
        f_number=field("f_number"),
        sensor_width_m=field("pixel_pitch_m") * frames.shape[-1],
    )


def default_settings(model: type[DepthModel]) -> list[dict[str, Any]]:
    """The defaults a model's runs depend on beyond the values they set: its :attr:`DepthModel.Config`'s
    and those of :attr:`DepthModel.reads_defaults_of`, as plain data (a run trained before one of them
    changed is not the same run).  # -> [asdict(Config()), ...]"""
    return [dataclasses.asdict(config()) for config in (model.Config, *model.reads_defaults_of)]


def saved_model_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved model config (a checkpoint's or a run's ``config.yaml``: complete when written) with
    the keys added to model ``name`` since at the values it had then (:attr:`DepthModel.saved_before`),
    not today's defaults; an unknown name is left for :func:`build_model` to refuse.  # plain data"""
    return {**(MODELS[name].saved_before if name in MODELS else {}), **config}
