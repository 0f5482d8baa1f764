"""Render settings keep the defocus (issue 17), measured from pixels.

The built-in recipes' sampling (samples per pixel, ``image.denoise``) and light
paths (``image.light_paths``) must leave the blur where :mod:`generator.core.lens`
puts it: the CoC of the calibration discs, and the blur of a textured plane
(fitted between its all-in-focus image and its defocused frames) against a
converged render. OpenImageDenoise does not: it erases the faint texture that a
disc blur leaves on a fine checker, which reads as about twice the blur; that is
why ``image.denoise`` stays off (``benchmarks/render_quality_speed.py``).
"""

from __future__ import annotations

import dataclasses

import pytest

from generator.scene.calibration import (
    COC_CASES,
    FOCAL_M,
    SENSOR_M,
    coc_error,
    coc_probe,
    coc_probes,
    fit_blur_px,
    measure_coc,
    plane_probe,
    tolerances,
)
from generator.core.lens import Lens, coc_px
from generator.recipe.recipe import builtin_recipes, load_recipe
from generator.scene.spec import LightPaths, with_render

IMAGES = {name: load_recipe(name).image for name in builtin_recipes()}
#: (image.denoise, image.samples) of every built-in recipe.
SAMPLINGS = sorted({(image.denoise, image.samples) for image in IMAGES.values()})
#: The textured plane: size (px), depth (m), focus distances (m) giving CoCs of 4.8 and 2.1 px.
SIZE, DEPTH_M, FOCUS_M = 64, 1.0, (0.4, 0.6)
CONVERGED_SAMPLES = 512


def _plane_blurs(samples: int, denoise: bool) -> list[float]:
    from generator.render.blender.render import render_scene

    result = render_scene(plane_probe(SIZE, DEPTH_M, FOCUS_M, samples=samples, denoise=denoise))
    return [fit_blur_px(result.aif, frame, 12.0) for frame in result.frames]


@pytest.fixture(scope="module")
def converged_plane(bpy) -> list[float]:
    blurs = _plane_blurs(CONVERGED_SAMPLES, False)
    spec = plane_probe(SIZE, DEPTH_M, FOCUS_M)
    predicted = [float(coc_px(spec.lens, DEPTH_M, f.focus_distance_m, SIZE)) for f in spec.frames]
    # The fit itself measures blur: on the converged render it finds the lens' CoC.
    assert all(tolerances(b, p) <= 1 for b, p in zip(blurs, predicted)), (blurs, predicted)
    return blurs


@pytest.mark.parametrize("denoise,samples", SAMPLINGS)
def test_coc_holds_for_every_recipe_sampling(bpy, denoise, samples):
    from generator.render.blender.render import render_scene

    for model in ("thin_lens", "blender"):
        for spec in coc_probes(model):
            spec = with_render(spec, samples=samples, denoise=denoise)
            for row in measure_coc(spec, render_scene(spec).frames):
                assert coc_error(row) <= 1, row


@pytest.mark.parametrize("denoise,samples", SAMPLINGS)
def test_textured_plane_keeps_its_blur_at_every_recipe_sampling(converged_plane, denoise, samples):
    blurs = _plane_blurs(samples, denoise)
    assert all(tolerances(b, c) <= 1 for b, c in zip(blurs, converged_plane)), (blurs, converged_plane)


def test_denoiser_erases_out_of_focus_texture(converged_plane):
    """OpenImageDenoise (albedo and normal guides), even at 64 samples, turns the plane's 4.8 px
    blur into far more: the reason ``image.denoise`` is off and warned about."""
    assert not any(image.denoise for image in IMAGES.values())
    blurs = _plane_blurs(64, True)
    assert blurs[0] > converged_plane[0] * 1.5, (blurs, converged_plane)


LIGHT_PATH_FIELDS = [f.name for f in dataclasses.fields(LightPaths)]


@pytest.mark.parametrize("field", LIGHT_PATH_FIELDS)
def test_each_light_path_default_keeps_the_coc(bpy, field):
    """Lit discs (direct and bounced light, partly glossy), each recipe's value of ``field`` set
    alone on Cycles' factory settings: the CoC stays within tolerance."""
    from generator.render.blender.render import render_scene

    f_number, depths, focus = COC_CASES[0]
    values = {getattr(image.light_paths, field) for image in IMAGES.values()}
    for value in sorted(values):
        paths = dataclasses.replace(LightPaths(), **{field: value})
        spec = coc_probe(Lens("thin_lens", FOCAL_M, f_number, SENSOR_M), depths, focus, lit=True)
        spec = with_render(spec, samples=64, light_paths=paths)
        rows = measure_coc(spec, render_scene(spec).frames)
        assert all(row["stray"] == 0 for row in rows), "light outside the discs: the probe saw its lamp or floor"
        for row in rows:
            assert coc_error(row) <= 1, (field, value, row)


def test_recipe_light_paths_together_keep_the_coc(bpy):
    from generator.render.blender.render import render_scene

    for paths in {image.light_paths for image in IMAGES.values()}:
        for model in ("thin_lens", "blender"):
            for spec in coc_probes(model, lit=True):
                spec = with_render(spec, samples=64, light_paths=paths)
                for row in measure_coc(spec, render_scene(spec).frames):
                    assert coc_error(row) <= 1, (paths, row)
