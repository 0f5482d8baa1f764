"""dfd_models.lens equals generator.core.lens (float64, rtol 1e-10) and is differentiable."""

from __future__ import annotations

import numpy as np
import pytest

from generator.core import lens as np_lens
from generator.core.errors import LensError

MODELS = ("thin_lens", "blender")


def _random_lenses(rng: np.random.Generator, model: str, count: int) -> list[np_lens.Lens]:
    return [
        np_lens.Lens(model, rng.uniform(0.01, 0.2), rng.uniform(1.0, 16.0), rng.uniform(0.01, 0.05))
        for _ in range(count)
    ]


def _batched(torch, lenses: list[np_lens.Lens]):
    from dfd_models.lens import LensParams

    def col(name: str):
        return torch.tensor([getattr(le, name) for le in lenses], dtype=torch.float64)

    return LensParams(lenses[0].model, col("focal_length_m"), col("f_number"), col("sensor_width_m"))


@pytest.mark.parametrize("model", MODELS)
def test_matches_numpy_lens_batched(torch, model):
    from dfd_models import lens as tl

    rng = np.random.default_rng(7)
    batch, points, width, height = 6, 50, 640, 480
    lenses = _random_lenses(rng, model, batch)
    focus = np.array([le.focal_length_m * rng.uniform(1.5, 100.0) for le in lenses])  # [B]
    depth = rng.uniform(0.05, 20.0, size=(batch, points))  # [B, P]
    params = _batched(torch, lenses)
    focus_t, depth_t = torch.tensor(focus), torch.tensor(depth)

    want_signed = np.stack([np_lens.coc_signed_m(le, depth[b], focus[b]) for b, le in enumerate(lenses)])
    want_px = np.stack([np_lens.coc_px(le, depth[b], focus[b], width) for b, le in enumerate(lenses)])
    want_l = np.array([np_lens.effective_focal_length_m(le, focus[b]) for b, le in enumerate(lenses)])
    want_k = np.stack([np_lens.intrinsics(le, focus[b], width, height) for b, le in enumerate(lenses)])

    close = dict(rtol=1e-10, atol=0.0)
    np.testing.assert_allclose(tl.coc_signed_m(params, depth_t, focus_t).numpy(), want_signed, **close)
    np.testing.assert_allclose(tl.coc_px(params, depth_t, focus_t, width).numpy(), want_px, **close)
    np.testing.assert_allclose(
        tl.coc_signed_px(params, depth_t, focus_t, width).numpy(),
        want_signed / np.array([le.pixel_pitch_m(width) for le in lenses])[:, None],
        **close,
    )
    np.testing.assert_allclose(tl.effective_focal_length_m(params, focus_t).numpy(), want_l, **close)
    np.testing.assert_allclose(tl.intrinsics(params, focus_t, width, height).numpy(), want_k, **close)
    np.testing.assert_allclose(params.aperture_m.numpy(), [le.aperture_m for le in lenses], **close)
    assert params.to(dtype=torch.float32).f_number.dtype == torch.float32


@pytest.mark.parametrize("model", MODELS)
def test_scalar_lens_broadcasts_like_numpy(torch, model):
    """A scalar lens and focus with a depth map of any shape, as in generator.core.lens."""
    from dfd_models import lens as tl

    le = np_lens.Lens(model, 0.05, 1.4, 0.036)
    depth = np.random.default_rng(1).uniform(0.2, 5.0, size=(3, 4, 5))
    params = tl.LensParams.from_lens(le, dtype=torch.float64)
    got = tl.coc_px(params, torch.tensor(depth), 0.5, 1024).numpy()
    np.testing.assert_allclose(got, np_lens.coc_px(le, depth, 0.5, 1024), rtol=1e-10, atol=0)
    np.testing.assert_allclose(
        tl.intrinsics(params, 0.5, 1024, 768).numpy(), np_lens.intrinsics(le, 0.5, 1024, 768), rtol=1e-10
    )


def test_design_doc_measurement(torch):
    """DESIGN.md 3: z = 3 m, F = 0.5 m, f = 50 mm, N = 1.4, 1024 px over 36 mm."""
    from dfd_models import lens as tl

    thin = tl.LensParams.from_lens(np_lens.Lens("thin_lens", 0.05, 1.4, 0.036), dtype=torch.float64)
    blender = tl.LensParams("blender", thin.focal_length_m, thin.f_number, thin.sensor_width_m)
    depth = torch.tensor([3.0], dtype=torch.float64)
    assert tl.coc_px(thin, depth, 0.5, 1024).item() == pytest.approx(94.1, abs=0.05)
    assert tl.coc_px(blender, depth, 0.5, 1024).item() == pytest.approx(84.7, abs=0.05)


@pytest.mark.parametrize("model", MODELS)
def test_coc_gradcheck(torch, model):
    from dfd_models import lens as tl

    params = tl.LensParams(
        model,
        torch.tensor([0.05, 0.035], dtype=torch.float64),
        torch.tensor([1.4, 2.8], dtype=torch.float64),
        torch.tensor([0.036, 0.024], dtype=torch.float64),
    )
    # Depths away from the focus: |c| has a kink at z = F.
    depth = torch.tensor([[0.3, 1.2, 3.0], [0.8, 2.0, 9.0]], dtype=torch.float64, requires_grad=True)  # [B, P]
    focus = torch.tensor([0.6, 1.5], dtype=torch.float64, requires_grad=True)  # [B]
    assert torch.autograd.gradcheck(lambda z, f: tl.coc_px(params, z, f, 512), (depth, focus))
    assert torch.autograd.gradcheck(lambda z, f: tl.coc_signed_m(params, z, f), (depth, focus))
    assert torch.autograd.gradcheck(lambda f: tl.intrinsics(params, f, 64, 48), (focus,))


def test_rejects_focus_inside_focal_length(torch):
    from dfd_models import lens as tl

    params = tl.LensParams.from_lens(np_lens.Lens("thin_lens", 0.05, 1.4, 0.036))
    with pytest.raises(LensError, match="focus distance must exceed"):
        tl.coc_px(params, torch.ones(3), 0.04, 64)
    with pytest.raises(LensError, match="not one of"):
        tl.LensParams("pinhole", params.focal_length_m, params.f_number, params.sensor_width_m)
