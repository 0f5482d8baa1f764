"""Geometric transforms of one decoded focus stack, keeping K consistent with the pixels, and
the pipeline stages that apply them at random (:func:`random_crop`, :func:`random_flip`).

A decoded stack (see :func:`dfd_models.data.stages.decode`) holds numpy images
whose height and width are axes -3 and -2 (channels last):

- ``frames`` [T, H, W, 3] float32 linear RGB, ``depth`` [H, W, 1] float32 metres,
- optionally ``aif`` [H, W, 3] and ``coc`` [T, H, W, 1],

and ``K`` [T, 3, 3] in pixels (OpenCV, pixel centres at integer + 0.5). The same
transform applies to every image of a stack, so a pixel's colour in every frame,
its depth and its CoC move together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from webdataset.filters import pipelinefilter

#: Fields holding images with height and width on axes -3, -2.
IMAGE_FIELDS = ("frames", "depth", "aif", "coc")


def image_size(stack: dict) -> tuple[int, int]:
    """(height, width) of a stack's images, pixels."""
    height, width = stack["frames"].shape[-3:-1]
    return height, width


def crop(stack: dict, top: int, left: int, height: int, width: int) -> dict:
    """Crop every image of ``stack`` to rows [top, top + height), columns [left, left + width).

    The principal point moves with the window: cx -= left, cy -= top (focal
    lengths are unchanged, so CoC in pixels is too). Returns a new dict of views.
    """
    out = dict(stack)
    for name in IMAGE_FIELDS:
        if name in stack:
            out[name] = stack[name][..., top : top + height, left : left + width, :]
    k = stack["K"].copy()  # [T, 3, 3]
    k[:, 0, 2] -= left
    k[:, 1, 2] -= top
    out["K"] = k
    return out


def hflip(stack: dict) -> dict:
    """Mirror every image of ``stack`` left-right, with K mirrored to match.

    A pixel at column u (continuous, centres at integer + 0.5) moves to W - u,
    so cx -> W - cx (and a skew term changes sign). The focal length keeps its
    sign: the flipped stack is the image of the mirrored scene (camera point
    (x, y, z) -> (-x, y, z)), which the new K projects exactly, so unprojecting
    the flipped depth with the flipped K gives a consistent (mirrored) 3D
    scene, and depth and CoC are unchanged. Returns a new dict of views.
    """
    out = dict(stack)
    for name in IMAGE_FIELDS:
        if name in stack:
            out[name] = stack[name][..., ::-1, :]
    _, width = image_size(stack)
    k = stack["K"].copy()  # [T, 3, 3]
    k[:, 0, 2] = width - k[:, 0, 2]
    k[:, 0, 1] = -k[:, 0, 1]
    out["K"] = k
    return out


@pipelinefilter
def random_crop(src: Iterable[dict], *, size: tuple[int, int], rng: np.random.Generator) -> Iterator[dict]:
    """Stage: crop every image of a stack to ``size`` = (height, width) pixels at one
    uniform random offset (K's principal point follows, :func:`crop`)."""
    height, width = size
    for stack in src:
        full_h, full_w = image_size(stack)
        if height > full_h or width > full_w:
            raise ValueError(f"crop {size} is larger than the {full_h}x{full_w} images of {stack['__url__']}")
        top = int(rng.integers(full_h - height + 1))
        left = int(rng.integers(full_w - width + 1))
        yield crop(stack, top, left, height, width)


@pipelinefilter
def random_flip(src: Iterable[dict], *, rng: np.random.Generator, p: float = 0.5) -> Iterator[dict]:
    """Stage: mirror a whole stack left-right with probability ``p`` (K follows, :func:`hflip`)."""
    for stack in src:
        yield hflip(stack) if rng.random() < p else stack
