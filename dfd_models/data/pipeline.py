"""The training data pipeline: shards -> batches of focus stacks.

:class:`FocalStackDataset` is an ``IterableDataset`` whose stages are a list
(:meth:`FocalStackDataset.stage_list`: shard reading from :mod:`dfd_models.data.stages`,
augmentation from :mod:`dfd_models.data.transforms`, the batch from
:mod:`dfd_models.data.batch`), composed by webdataset's ``DataPipeline`` inside each
DataLoader worker; :func:`make_loader` wraps it in a DataLoader with a per-epoch seed and an
optional fixed epoch length.

Reproducibility: every random draw (shard order, shuffle buffer, ramp choice,
crop, flip) comes from generators seeded by (seed, epoch, rank, worker), or by
(seed, epoch, pass) for the shard order, which every rank and worker share so
that they split the same permutation. The same seed, epoch, world size and
number of workers give the same batches.
"""

from __future__ import annotations

import functools
import itertools
import random
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from webdataset.filters import batched, shuffle
from webdataset.pipeline import DataPipeline
from webdataset.utils import pytorch_worker_info

from generator.core.errors import CorruptShard
from dfd_models.config import AUTO, DataSection
from dfd_models.data import stages
from dfd_models.data.batch import Batch, collate, to_tensors
from dfd_models.data.transforms import random_crop, random_flip
from dfd_models.sizing import auto_data
from dfd_models.data.sources import resolve_shards, shard_pass


class FocalStackDataset(IterableDataset):
    """Focus stacks (or batches of them) from WebDataset shards, one ramp per sample.

    Args:
        data: what to read and how (:class:`dfd_models.config.DataSection`, the one
            declaration of these options and their defaults): ``shards`` (a directory,
            brace pattern or list, :func:`dfd_models.data.sources.resolve_shards`),
            ``split``, ``crop`` ((height, width) of a random crop, pixels; None keeps
            full frames), ``flip`` (random left-right flips, p = 0.5), ``ramp`` (which
            ramp of a sequence is the stack: an index or ``"random"``), ``shuffle``
            (buffer size in samples, held encoded, whole sequences before decoding;
            the shard order is shuffled per pass too; 0 reads shards and samples in
            order), ``batch_size`` and ``skip_corrupt`` (warn about and skip corrupt
            samples/shards instead of raising :class:`generator.core.errors.CorruptShard`).
            An ``auto`` crop or batch size is sized here as training sizes it
            (:func:`dfd_models.sizing.auto_data`: this machine's device, the image size
            in the dataset's manifest, no model).
        batched: collate ``data.batch_size`` samples per item (the last batch of a
            worker's pass may be smaller); False: single samples.
        repeat: cycle through the shards without end (cut by an epoch length
            downstream); else one pass.
        seed: base seed of every random draw.
        rank, world_size: this DDP process and their number; default from
            ``torch.distributed`` (or the ``RANK``/``WORLD_SIZE`` variables).

    Attributes:
        epoch: current epoch, part of every seed; set it before iterating
            (:class:`FocalStackLoader` does).

    Yields batches (:class:`dfd_models.data.batch.Batch`), or unbatched their samples
    (every entry without the leading B, ``key`` a str).
    """

    def __init__(
        self,
        data: DataSection,
        *,
        batched: bool = True,
        repeat: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if data.shards is None:
            raise ValueError("data.shards is not set: no shards to read")
        self.urls = resolve_shards(data.shards, data.split)
        default_rank, default_world, _, _ = pytorch_worker_info()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if len(self.urls) < self.world_size:
            raise ValueError(f"{len(self.urls)} shards cannot be split across {self.world_size} ranks")
        if data.crop == AUTO or (batched and data.batch_size == AUTO):
            data = _sized(data)
        self.crop = None if data.crop is None else tuple(data.crop)
        self.flip, self.ramp, self.shuffle = data.flip, data.ramp, data.shuffle
        self.batch_size, self.repeat = data.batch_size if batched else None, repeat
        self.seed, self.epoch = seed, 0
        self.handler = stages.warn_and_skip if data.skip_corrupt else stages.reraise

    def _raw_samples(self, worker: int, num_workers: int) -> Iterator[dict]:
        """Encoded samples of this rank's and worker's shards, pass after pass when repeating;
        stops after a pass that yields nothing (no shards here, or all corrupt and skipped)."""
        for pass_index in itertools.count():
            urls = shard_pass(self.urls, seed=self.seed, epoch=self.epoch, pass_index=pass_index,
                              shuffle=self.shuffle > 0, rank=self.rank, world_size=self.world_size,
                              worker=worker, num_workers=num_workers)
            count = 0
            for sample in stages.tar_samples(handler=self.handler)(urls):
                count += 1
                yield sample
            if count == 0 or not self.repeat:
                return

    def stage_list(self, worker: int, num_workers: int) -> list:
        """The pipeline of DataLoader worker ``worker`` of ``num_workers`` in this epoch, source
        first, as ``webdataset.DataPipeline`` takes it (None: a stage this config leaves out).

        One generator, seeded by (seed, epoch, rank, worker), draws in turn the shuffle
        buffer's seed, then per sample its ramp, crop and flip.
        """
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        return [
            functools.partial(self._raw_samples, worker, num_workers),
            shuffle(self.shuffle, initial=self.shuffle, rng=random.Random(int(rng.integers(2**63))))
            if self.shuffle > 1 else None,
            stages.select_ramp(ramp=self.ramp, rng=rng, handler=self.handler),
            stages.decode(handler=self.handler),
            random_crop(size=self.crop, rng=rng) if self.crop is not None else None,
            random_flip(rng=rng) if self.flip else None,
            to_tensors(),
            batched(self.batch_size, collation_fn=collate, partial=True) if self.batch_size is not None else None,
        ]

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        src = iter(DataPipeline(*self.stage_list(worker, num_workers)))
        return src if info is None else _reported(src)


def _sized(data: DataSection) -> DataSection:
    """``data`` with an ``auto`` crop and batch size sized for this machine's device and the
    images of ``data.shards`` (when it is a dataset directory with a manifest)."""
    from dfd_models.checkpoint import dataset_info  # here: it imports the models

    image = dataset_info(data.shards).get("image") if isinstance(data.shards, (str, Path)) else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return auto_data(data, image=image, device=device)[0]


def loader_workers(workers: int | str, shards_per_rank: int, auto: int = 2) -> int:
    """DataLoader workers for ``data.workers`` = ``workers`` with ``shards_per_rank`` shards per
    process: ``auto`` is ``min(auto, shards_per_rank)``, silently; a number is cut to
    ``shards_per_rank`` (a worker without a shard reads nothing), with a warning."""
    if workers == AUTO:
        return min(auto, shards_per_rank)
    if workers > shards_per_rank:
        warnings.warn(f"data.workers = {workers} but only {shards_per_rank} shards per process: "
                      f"using {shards_per_rank} workers (a worker reads whole shards)", stacklevel=3)
        return shards_per_rank
    return workers


#: Key of the item a dataset yields in place of raising :class:`CorruptShard`.
CORRUPT = "__corrupt__"


def _reported(src: Iterator[dict]) -> Iterator[dict]:
    """Yield ``src``; a :class:`CorruptShard` becomes one last item ``{CORRUPT: (shard, member,
    reason)}``. Used in DataLoader workers, which cannot pass the exception itself on (torch
    rebuilds it from its formatted traceback: ~80 lines), so :class:`FocalStackLoader` raises
    it again from this item."""
    try:
        yield from src
    except CorruptShard as exn:
        yield {CORRUPT: (exn.shard, exn.member, exn.reason)}


def _raise_corrupt(batches: Iterator[dict]) -> Iterator[dict]:
    """Pass batches on; raise the :class:`CorruptShard` a dataset reported (:func:`_reported`)."""
    for batch in batches:
        if CORRUPT in batch:
            raise CorruptShard(*batch[CORRUPT])
        yield batch


class FocalStackLoader:
    """Batches of focus stacks, one epoch per iteration.

    Each ``iter()`` runs epoch :attr:`epoch` (seeding the dataset with it) and
    then advances it; :meth:`set_epoch` sets it explicitly (to resume). With an
    epoch length the epoch is exactly ``len(self)`` full batches drawn from the
    endlessly cycled shards; without one it is one pass over this rank's shards.
    Workers are started per epoch (not persistent), so they see the new epoch.

    Attributes:
        workers: the DataLoader worker processes it runs (``data.workers`` resolved,
            :func:`loader_workers`).
    """

    def __init__(self, dataset: FocalStackDataset, loader: DataLoader, batches_per_epoch: int | None):
        self.dataset, self.loader, self.batches_per_epoch = dataset, loader, batches_per_epoch
        self.epoch, self.workers = 0, loader.num_workers

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("a loader without epoch_len has no fixed length")
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        self.dataset.epoch = self.epoch
        self.epoch += 1
        batches = self.batches_per_epoch if self.batches_per_epoch is not None else sys.maxsize
        return itertools.islice(_raise_corrupt(iter(self.loader)), batches)


def make_loader(
    data: DataSection,
    *,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    pin_memory: bool = False,
    auto_workers: int = 2,
) -> FocalStackLoader:
    """A loader of focus-stack batches.

    Args:
        data: the data section (:class:`FocalStackDataset`), whole; besides what the
            dataset reads: ``workers``, DataLoader worker processes (0: load in this
            process; shards are split across ranks, then workers, so at most the shards
            per rank run: :func:`loader_workers`), and ``epoch_len``,
            samples per epoch on this rank (the epoch is then ``epoch_len //
            batch_size`` full batches, and the shards are cycled so every rank yields
            the same number; use it under DDP; None: one pass over this rank's
            shards, each sample once). :meth:`DataSection.for_eval` gives an
            evaluation's (full frames, no flips, ramp 0, in order).
        seed, rank, world_size: as :class:`FocalStackDataset`.
        pin_memory: the DataLoader's.
        auto_workers: the workers ``data.workers: auto`` asks for (then at most one per
            shard of this rank); training on the CPU asks for the cores torch leaves free.

    Yields batches (:class:`dfd_models.data.batch.Batch`).
    """
    dataset = FocalStackDataset(data, repeat=data.epoch_len is not None, seed=seed, rank=rank, world_size=world_size)
    batch_size = dataset.batch_size
    if data.epoch_len is not None and data.epoch_len < batch_size:
        raise ValueError(f"epoch_len={data.epoch_len} holds no full batch of {batch_size}")
    workers = loader_workers(data.workers, len(dataset.urls) // dataset.world_size, auto_workers)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory)
    return FocalStackLoader(dataset, loader, None if data.epoch_len is None else data.epoch_len // batch_size)
