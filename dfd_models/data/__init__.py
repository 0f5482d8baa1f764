"""Training data: WebDataset shards -> batches of focus stacks (DESIGN.md section 7).

Quick start::

    from dfd_models.data import DataSection, make_loader
    loader = make_loader(DataSection(shards="data/small_obj", crop=[128, 128], batch_size=8, workers=4,
                                     epoch_len=10_000), seed=0)
    for batch in loader:            # one epoch
        batch["frames"]             # [B, T, 3, H, W] float32 linear RGB, T sorted by focus
        batch["depth"]              # [B, 1, H, W] planar metres of frame batch["ref_frame"]

Modules: :mod:`.sources` (shard lists and splitting), :mod:`.stages` (pipeline
stages), :mod:`.transforms` (crop/flip with K), :mod:`.pipeline` (dataset, loader).
"""

from dfd_models.config import DataSection
from dfd_models.data.pipeline import FocalStackDataset, FocalStackLoader, make_loader
from dfd_models.data.sources import resolve_shards

__all__ = ["DataSection", "FocalStackDataset", "FocalStackLoader", "make_loader", "resolve_shards"]
