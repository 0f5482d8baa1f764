"""How RGB samples are spent (recipe ``image.adaptive_threshold``, ``adaptive_min_samples``, ``denoise``):
the settings reach Cycles, never touch depth, and the denoiser warns; and how a sample is encoded
(each distinct image once, off the render thread, the same bytes)."""

from __future__ import annotations

import functools
import threading
import time
import warnings

import numpy as np
import pytest

from fakes import TINY, FakeRendered, fake_render, fake_task, make_spec, tiny_recipe
from generator.dataset import encoder as encoding
from generator.dataset.encoder import Encoder
from generator.dataset.sample import encode_sample
from generator.render.pipeline import DENOISE, render_dataset
from generator.recipe.recipe import load_recipe
from generator.draw.scene import draw_scene
from generator.scene.spec import with_render


def test_sampling_options_reach_cycles(bpy):
    from generator.render.blender.build import set_beauty_sampling

    scene = bpy.data.scenes.new("options_test")
    try:
        cycles = scene.cycles
        set_beauty_sampling(scene, make_spec().render)  # the defaults: every pixel gets every sample
        assert not cycles.use_adaptive_sampling and not cycles.use_denoising
        set_beauty_sampling(scene, with_render(make_spec(), samples=64, adaptive_threshold=0.02, denoise=True).render)
        assert cycles.use_adaptive_sampling and cycles.adaptive_threshold == pytest.approx(0.02)
        assert cycles.adaptive_min_samples == 16  # 0 in the recipe: a quarter of the samples
        assert cycles.use_denoising and cycles.denoiser == "OPENIMAGEDENOISE"
        set_beauty_sampling(scene, with_render(make_spec(), samples=64, adaptive_threshold=0.02,
                                         adaptive_min_samples=7).render)
        assert cycles.adaptive_min_samples == 7 and not cycles.use_denoising
    finally:
        bpy.data.scenes.remove(scene)


def test_options_change_frames_not_depth_and_stay_deterministic(bpy):
    from generator.render.blender.render import render_scene

    spec = with_render(draw_scene(load_recipe("small_obj", TINY), 0), samples=64)  # at 16 samples Cycles stopped no pixel early
    plain = render_scene(spec)
    adaptive = with_render(spec, adaptive_threshold=0.1, adaptive_min_samples=4)
    one, two = render_scene(adaptive, threads=1), render_scene(adaptive, threads=2)
    denoised = render_scene(with_render(spec, denoise=True))
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


def _count_rgb_encodings(monkeypatch) -> list:
    """Patch the RGB codec to record (thread name, start time) of every image it encodes."""
    calls, encode = [], encoding.encode_rgb

    def recorded(rgb, kind, quality):
        calls.append((threading.current_thread().name, time.perf_counter()))
        return encode(rgb, kind, quality)

    monkeypatch.setattr(encoding, "encode_rgb", recorded)
    return calls


@pytest.mark.parametrize("background", [False, True])
def test_repeated_ramps_are_encoded_once_with_the_same_bytes(monkeypatch, background):
    spec = make_spec(aif=True, coc=True)
    fresh = fake_render(spec)
    expected = encode_sample(spec, fresh, tiny_recipe())
    # A static scene's renderer hands repeated views one shared array: frames 0 and 2 here.
    shared = FakeRendered([fresh.frames[0], fresh.frames[1], fresh.frames[0], fresh.frames[3]], fresh.depth, fresh.aif)
    expected["f002.png"] = expected["f000.png"]
    calls = _count_rgb_encodings(monkeypatch)
    with Encoder(spec, background=background) as encoder:
        encoder.depth_pass(shared.depth, None)  # as the renderer does, while rendering on
        encoder.image(shared.frames[1], [1])
        assert encode_sample(spec, shared, tiny_recipe(), encoder) == expected
    assert len(calls) == 4  # three distinct frames and the all-in-focus image, not five
    with pytest.raises(ValueError, match="another scene"):
        encode_sample(spec, shared, tiny_recipe(), Encoder(make_spec(index=4)))


def test_depth_pass_members_encoded_early_are_the_members_encoded_late():
    recipe = load_recipe("dynamic", ["image.width=32", "image.height=24", "outputs.coc=true"])
    spec = draw_scene(recipe, 2)
    rendered = fake_render(spec)
    with Encoder(spec, background=True) as encoder:
        early = encoder.depth_pass(rendered.depth, rendered.object_index)
        sample = encode_sample(spec, rendered, recipe, encoder)
    names = {n for n in sample if n.endswith((".depth.exr", ".coc.exr", ".motion.exr"))}
    assert set(early) == names and len(names) == 3 * len(spec.frames) - 1
    assert sample == encode_sample(spec, rendered, recipe)


def test_images_are_encoded_while_the_next_view_renders(bpy, monkeypatch):
    from generator.render.blender import render as rendermod
    from generator.render.tasks import render_sample

    recipe = load_recipe("small_obj", TINY)
    spec = draw_scene(recipe, 1)
    returned = []
    render_scene = rendermod.render_scene

    def timed(*args, **kwargs):
        result = render_scene(*args, **kwargs)
        returned.append(time.perf_counter())
        return result

    monkeypatch.setattr(rendermod, "render_scene", timed)
    calls = _count_rgb_encodings(monkeypatch)
    sample, rendered = render_sample(spec, recipe, threads=1)
    # Every distinct image was encoded once, off the render thread, and the first
    # ones while Cycles still rendered (before render_scene returned).
    views = {(f.time_s, f.focus_distance_m) for f in spec.frames}
    assert len(calls) == len({id(f) for f in rendered.frames}) + (rendered.aif is not None) == len(views) + spec.render.aif
    assert all(name.startswith("dfdgen-encode") for name, _ in calls)
    assert calls[0][1] < returned[0]
    assert sample == encode_sample(spec, rendered, recipe)  # the same bytes as encoding afterwards
