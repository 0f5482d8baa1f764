"""dfdgen training module: shard loading, depth networks, Gaussian-splat defocus renderer.

Importing this package is cheap: it pulls in neither torch nor any submodule.
Import what you need, e.g. ``from dfd_models.splat import render_defocus``.
"""
