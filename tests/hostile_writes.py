"""Hostile-case helpers for links planted where dfdgen writes, locks, read-only and full folders (tests/hostile/cases.yaml):
``DAMAGE`` (name -> function(data folder)), ``ASSETS`` (name -> mesh bytes, written as meshes/mesh.SUFFIX)
and ``SETUP`` (name -> function(work folder)), merged into :mod:`test_hostile`'s."""

from __future__ import annotations

DAMAGE: dict = {}
ASSETS: dict = {}
SETUP: dict = {}
