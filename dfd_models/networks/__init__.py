"""Depth networks, built by name (DESIGN.md section 7; ZoeDepth-style builder).

One network per module; each registers its :class:`DepthModel` subclass with
:func:`register`, and importing this package imports them all, so
:data:`MODELS` lists every model::

    from dfd_models.networks import MODELS, build_model
    model = build_model("sdgs", {"max_depth_m": 3.0})

The contract every model follows is documented in :mod:`dfd_models.networks.base`.
"""

from dfd_models.networks.base import MODELS, DepthModel, build_model, lens_from_batch, register
from dfd_models.networks import sdgs  # noqa: F401  (registers "sdgs")
from dfd_models.networks import sdgs_stack  # noqa: F401  (registers "sdgs_stack")
from dfd_models.networks import ddff  # noqa: F401  (registers "ddff")
from dfd_models.networks import lstm_ddff  # noqa: F401  (registers "lstm_ddff")
from dfd_models.networks import recurrent_ae  # noqa: F401  (registers "recurrent_ae")
from dfd_models.networks import defocusnet  # noqa: F401  (registers "defocusnet")
from dfd_models.networks import reference  # noqa: F401  (registers "constant", "dff" and "dfd_sweep")

__all__ = ["MODELS", "DepthModel", "build_model", "lens_from_batch", "register"]
