"""Drawing from a recipe's ranges with an explicit ``np.random.Generator`` (no global random state).

Every draw of a scene goes through these, in a fixed order, so the same recipe and seed give the
same scene wherever it is drawn (:mod:`generator.draw.scene`).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from generator.recipe.recipe import IntRange, Range


def uniform(rng: np.random.Generator, span: Range) -> float:
    return float(rng.uniform(span.min, span.max))


def integer(rng: np.random.Generator, span: IntRange) -> int:
    return int(rng.integers(span.min, span.max, endpoint=True))


#: What :func:`pick` draws: a name, an asset file.
T = TypeVar("T")


def pick(rng: np.random.Generator, items: tuple[T, ...]) -> T:
    return items[int(rng.integers(len(items)))]


def direction(rng: np.random.Generator) -> np.ndarray:
    """A unit vector, uniform on the sphere."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)
