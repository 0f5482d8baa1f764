"""Hostile-case helpers for damaged members that `inspect --verify`, export, train and eval must catch (tests/hostile/cases_verify.yaml):
``DAMAGE`` (name -> function(data folder)), ``ASSETS`` (name -> mesh bytes, written as meshes/mesh.SUFFIX)
and ``SETUP`` (name -> function(work folder)), merged into :mod:`test_hostile`'s."""

from __future__ import annotations

DAMAGE: dict = {}
ASSETS: dict = {}
SETUP: dict = {}
