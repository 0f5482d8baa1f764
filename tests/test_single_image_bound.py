"""benchmarks/single_image_bound.py's labels under focus breathing (no rendering or training)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bound(torch):
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
        import single_image_bound

        yield single_image_bound


def _breathing_batch(torch, scale: float):
    """Three frames of 32 px whose frame 0 images the scene ``scale`` times larger than the reference
    (frame 1), a 0.5 m square on a 2 m wall on the reference grid."""
    size, f = 32, 40.0
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float64).repeat(1, 3, 1, 1)
    K[0, 0, :2, :2] *= scale
    K[0, 0, :2, 2] = size / 2  # the principal point stays at the centre
    depth = torch.full((1, 1, size, size), 2.0)
    depth[..., 12:20, 8:16] = 0.5
    return {"K": K, "frames": torch.zeros(1, 3, 3, size, size), "depth": depth,
            "valid": torch.ones(1, 1, size, size, dtype=torch.bool), "wall": depth > 1.0}


def test_labels_move_onto_the_input_frames_grid(bound, torch):
    """The square's labels land where frame 0 images it: scaled about the centre (its edges at
    16 + 1.1 (x - 16)), nearest neighbour keeps the depths; pixels frame 0 sees outside the
    reference view are not valid; without the warp the labels stay as stored."""
    batch = _breathing_batch(torch, 1.1)
    depth, valid, wall = bound.on_input_grid(batch, warp=True)
    assert set(depth.unique().tolist()) == {0.5, 2.0}
    rows = (depth[0, 0] < 1).any(1).nonzero()[:, 0]
    cols = (depth[0, 0] < 1).any(0).nonzero()[:, 0]
    # reference rows 12..19 and columns 8..15 (pixel edges 12-20, 8-16) scaled by 1.1 about 16
    assert (int(rows.min()), int(rows.max())) == (12, 19)
    assert (int(cols.min()), int(cols.max())) == (7, 15)
    assert bool(valid.all()) and torch.equal(wall, depth > 1)  # zoomed in: every pixel is seen

    wide = _breathing_batch(torch, 0.9)  # zoomed out: frame 0 sees beyond the reference's border
    _, valid, _ = bound.on_input_grid(wide, warp=True)
    assert not bool(valid[..., 0, 0]) and not bool(valid[..., -1, -1]) and bool(valid[..., 16, 16])
    same = bound.on_input_grid(batch, warp=False)
    assert same[0] is batch["depth"] and same[1] is batch["valid"]
