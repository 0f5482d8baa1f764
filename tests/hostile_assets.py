"""Hostile-case helpers for asset folders, meshes, checkpoints and predict (tests/hostile/cases_assets.yaml):
``DAMAGE`` (name -> function(data folder)), ``ASSETS`` (name -> mesh bytes, written as meshes/mesh.SUFFIX)
and ``SETUP`` (name -> function(work folder)), merged into :mod:`test_hostile`'s."""

from __future__ import annotations

DAMAGE: dict = {}
ASSETS: dict = {}
SETUP: dict = {}
