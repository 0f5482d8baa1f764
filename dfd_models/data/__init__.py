"""Training data: WebDataset shards -> batches of focus stacks (DESIGN.md section 7).

Quick start::

    from dfd_models.data import DataSection, make_loader
    loader = make_loader(DataSection(shards="data/small_obj", crop=[128, 128], batch_size=8, workers=4,
                                     epoch_len=10_000), seed=0)
    for batch in loader:            # one epoch, each a Batch
        batch["frames"]             # [B, T, 3, H, W] float32 linear RGB, T sorted by focus
        batch["depth"]              # [B, 1, H, W] planar metres of frame reference_index(T)

Modules: :mod:`.batch` (the batch's type, the reference frame, the stages that make a
batch), :mod:`.sources` (shard lists and splitting), :mod:`.stages` (the stages that read
shards), :mod:`.transforms` (crop/flip with K), :mod:`.pipeline` (the stages as a list,
the dataset, the loader).
"""

from dfd_models.config import DataSection
from dfd_models.data.batch import Batch, reference_index
from dfd_models.data.pipeline import FocalStackDataset, FocalStackLoader, make_loader
from dfd_models.data.sources import resolve_shards

__all__ = ["Batch", "DataSection", "FocalStackDataset", "FocalStackLoader", "make_loader", "reference_index",
           "resolve_shards"]
