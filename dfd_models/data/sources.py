"""Shard lists: resolve what the user gave into shard URLs, and split them.

A dataset directory holds ``{recipe}-{split}-{shard:06d}.tar`` and
``manifest.json`` (DESIGN.md section 5). :func:`resolve_shards` turns a
directory, a brace pattern (``data/x-train-{000000..000003}.tar``) or a list of
paths/URLs into a sorted list of shard URLs. :func:`shard_pass` orders the
shards of one pass and keeps the ones of this DDP rank and DataLoader worker.

What a directory holds is data: its shards come back as absolute local paths
(a manifest entry is checked by :func:`generator.dataset.format.manifest_shards`), so a
file or manifest entry named ``pipe:...`` is never run. Only a URL or ``pipe:``
the caller writes itself is passed to webdataset as such.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from generator.core.errors import BadInput
from generator.dataset.format import MANIFEST, manifest_shards, shard_split


def _directory_shards(directory: Path, split: str | None) -> list[str]:
    """Absolute paths of a directory's shards: those its manifest lists, else every ``*.tar`` in it."""
    if (directory / MANIFEST).exists():
        return [str(p) for p in manifest_shards(directory, split)]
    folder = directory.resolve()
    return [str(folder / p.name) for p in directory.glob("*.tar")
            if p.is_file() and (split is None or shard_split(p.name) == split)]


def resolve_shards(urls: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = None) -> list[str]:
    """Shard URLs from a directory, a brace pattern, or a list of paths/URLs.

    Args:
        urls: a dataset directory (the shards its ``manifest.json`` lists, else
            every ``*.tar`` in it), a path/URL that may hold brace patterns,
            ``::``-separated alternatives of those (webdataset's syntax, e.g.
            ``data/small_obj::data/large_obj``), or a list of such.
        split: keep only shards of this split (``"train"``): the manifest's
            ``split``, else the one in the file name ``{recipe}-{split}-{shard:06d}.tar``.

    Returns:
        The shard URLs; a directory's sorted by name, others in the order given.

    Raises:
        BadInput: nothing matched (the message names what was given).
    """
    given = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    # "::" joins alternatives in webdataset's syntax; splitting first lets them be dataset directories too.
    given = [part for item in given for part in os.fspath(item).split("::")]
    out: list[str] = []
    for item in given:
        if os.path.isdir(item):
            out.extend(sorted(_directory_shards(Path(item), split)))
        else:
            out.extend(url for url in expand_urls(item) if split is None or shard_split(url) == split)
    if not out:
        where = f" of split {split!r}" if split is not None else ""
        raise BadInput(f"no shards{where} found in {urls!r}")
    return out


def shard_pass(
    urls: Sequence[str],
    *,
    seed: int,
    epoch: int,
    pass_index: int,
    shuffle: bool,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
) -> list[str]:
    """The shards one rank and worker read in one pass over the data.

    The pass permutes all shards with a generator seeded by (seed, epoch,
    pass_index), the same on every rank and worker, then keeps every
    ``world_size``-th shard from ``rank`` and of those every ``num_workers``-th
    from ``worker``: the ranks and workers read disjoint shards that together
    cover all of them.

    Args:
        shuffle: permute the shards (else keep their order).
    """
    order = np.arange(len(urls))
    if shuffle:
        order = np.random.default_rng([seed, epoch, pass_index]).permutation(order)
    return [urls[i] for i in order[rank::world_size][worker::num_workers]]
