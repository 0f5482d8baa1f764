"""How RGB samples are spent (recipe ``image.adaptive_threshold``, ``adaptive_min_samples``, ``denoise``):
the settings reach Cycles, never touch depth, and the denoiser warns."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np
import pytest

from fakes import TINY, fake_task, make_spec, tiny_recipe
from generator.pipeline import DENOISE, render_dataset
from generator.recipe import load_recipe
from generator.sampling import sample_scene


def _with(spec, **render):
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, **render))


def test_sampling_options_reach_cycles(bpy):
    from generator.blender.build import set_beauty_sampling

    scene = bpy.data.scenes.new("options_test")
    try:
        cycles = scene.cycles
        set_beauty_sampling(scene, make_spec().render)  # the defaults: every pixel gets every sample
        assert not cycles.use_adaptive_sampling and not cycles.use_denoising
        set_beauty_sampling(scene, _with(make_spec(), samples=64, adaptive_threshold=0.02, denoise=True).render)
        assert cycles.use_adaptive_sampling and cycles.adaptive_threshold == pytest.approx(0.02)
        assert cycles.adaptive_min_samples == 16  # 0 in the recipe: a quarter of the samples
        assert cycles.use_denoising and cycles.denoiser == "OPENIMAGEDENOISE"
        set_beauty_sampling(scene, _with(make_spec(), samples=64, adaptive_threshold=0.02,
                                         adaptive_min_samples=7).render)
        assert cycles.adaptive_min_samples == 7 and not cycles.use_denoising
    finally:
        bpy.data.scenes.remove(scene)


def test_options_change_frames_not_depth_and_stay_deterministic(bpy):
    from generator.blender.render import render_scene

    spec = _with(sample_scene(load_recipe("small_obj", TINY), 0), samples=64)  # at 16 samples Cycles stopped no pixel early
    plain = render_scene(spec)
    adaptive = _with(spec, adaptive_threshold=0.1, adaptive_min_samples=4)
    one, two = render_scene(adaptive, threads=1), render_scene(adaptive, threads=2)
    denoised = render_scene(_with(spec, denoise=True))
    for other in (one, denoised):
        assert all(np.array_equal(a, b) for a, b in zip(plain.depth, other.depth))
        assert not np.array_equal(plain.frames[0], other.frames[0])
    assert all(np.array_equal(a, b) for a, b in zip(one.frames, two.frames))


def test_denoise_warns_and_only_then(tmp_path):
    for denoise, expected in ((True, [DENOISE]), (False, [])):
        recipe = tiny_recipe(f"image.denoise={str(denoise).lower()}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            render_dataset(recipe, tmp_path / str(denoise), task=functools.partial(fake_task, recipe),
                           progress=False)
        assert [str(w.message) for w in caught if w.category is RuntimeWarning] == expected
