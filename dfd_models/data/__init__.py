"""Training data: WebDataset shards -> batches of focus stacks (DESIGN.md section 7).

Quick start::

    from dfd_models.data import make_loader
    loader = make_loader("data/small_obj", batch_size=8, crop=(128, 128), split="train",
                         num_workers=4, epoch_len=10_000, seed=0)
    for batch in loader:            # one epoch
        batch["frames"]             # [B, T, 3, H, W] float32 linear RGB, T sorted by focus
        batch["depth"]              # [B, 1, H, W] planar metres of frame batch["ref_frame"]

Modules: :mod:`.sources` (shard lists and splitting), :mod:`.stages` (pipeline
stages), :mod:`.transforms` (crop/flip with K), :mod:`.pipeline` (dataset, loader).
"""

from dfd_models.data.pipeline import FocalStackDataset, FocalStackLoader, make_loader
from dfd_models.data.sources import resolve_shards

__all__ = ["FocalStackDataset", "FocalStackLoader", "make_loader", "resolve_shards"]
