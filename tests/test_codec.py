"""Sample encoding (DESIGN.md section 5): metadata, codecs, determinism. No Blender needed."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from fakes import fake_render, make_spec, tiny_recipe
from generator import lens as lensmod
from generator.codec import decode_sample, encode_sample, linear_to_srgb, read_exr_bytes, srgb_to_linear
from generator.spec import world_to_camera


def _encode(**kw):
    spec = make_spec(**kw)
    rendered = fake_render(spec)
    return spec, rendered, encode_sample(spec, rendered, tiny_recipe())


def _digest(sample: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(sample):
        h.update(name.encode() + b"\0" + (sample[name] if isinstance(sample[name], bytes) else sample[name].encode()))
    return h.hexdigest()


def _digest_in_child(kw: dict) -> str:
    return _digest(_encode(**kw)[2])


def test_metadata_fields_and_lens_consistency():
    spec, rendered, sample = _encode(aif=True, coc=True)
    meta = json.loads(sample["json"])
    assert sample["__key__"] == "00000003"
    assert set(meta) >= {"format_version", "generator", "recipe", "scene_index", "seed", "split",
                         "image", "lens", "depth", "frames", "scene"}
    assert meta["generator"]["name"] == "dfdgen"
    recipe = tiny_recipe()
    assert meta["recipe"] == {"name": "small_obj", "sha256": recipe.sha256, "seed": recipe.seed}
    assert (meta["scene_index"], meta["seed"], meta["split"]) == (3, 1003, "train")
    assert meta["image"] == {"width": 32, "height": 24, "samples": 4}
    assert meta["lens"]["pixel_pitch_m"] == pytest.approx(0.036 / 32)
    valid = np.concatenate([d[d > 0] for d in rendered.depth])
    assert meta["depth"] == {"per_frame": True, "kind": "planar", "units": "m", "invalid": 0,
                             "min_m": float(valid.min()), "max_m": float(valid.max()), "wall_m": None}  # make_spec has no wall
    assert meta["scene"] == spec.to_dict()
    assert len(meta["frames"]) == 4
    for fm, fs in zip(meta["frames"], spec.frames):
        assert (fm["index"], fm["ramp"], fm["focus_distance_m"]) == (fs.index, fs.ramp, fs.focus_distance_m)
        np.testing.assert_array_equal(fm["K"], lensmod.intrinsics(spec.lens, fs.focus_distance_m, 32, 24))
        np.testing.assert_array_equal(fm["world_to_camera"], world_to_camera(spec.camera))
        cam = lensmod.blender_camera(spec.lens, fs.focus_distance_m)
        assert fm["blender_camera"] == {"lens_mm": cam.lens_mm, "fstop": cam.fstop,
                                        "focus_distance_m": cam.focus_distance_m,
                                        "sensor_width_mm": cam.sensor_width_mm}
    # thin lens breathes: K's focal length changes with the focus
    assert meta["frames"][0]["K"][0][0] != meta["frames"][1]["K"][0][0]
    assert sample["json"].decode() == json.dumps(meta, sort_keys=True, indent=1)


def test_members_and_codecs():
    spec, rendered, sample = _encode(aif=True, coc=True)
    assert sorted(k for k in sample if k != "__key__") == sorted(
        ["json", "aif.png"] + [f"f{i:03d}.{m}" for i in range(4) for m in ("png", "depth.exr", "coc.exr")]
    )
    image = Image.open(io.BytesIO(sample["f000.png"]))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 24))
    expected = np.floor(linear_to_srgb(rendered.frames[0]) * 255 + 0.5)
    np.testing.assert_array_equal(np.asarray(image), expected)

    exr = OpenEXR.File(io.BytesIO(sample["f002.depth.exr"]), separate_channels=True)
    assert list(exr.channels()) == ["Z"]
    z = exr.channels()["Z"].pixels
    assert z.dtype == np.float32 and z.shape == (24, 32)
    np.testing.assert_array_equal(z, rendered.depth[2])
    assert exr.header()["compression"] == OpenEXR.ZIP_COMPRESSION

    coc = read_exr_bytes(sample["f001.coc.exr"])["Y"]
    np.testing.assert_allclose(coc, lensmod.coc_map_px(spec.lens, rendered.depth[1], 2.0, 32))
    assert coc[0, 0] == 0.0  # sky


def test_static_blender_lens_has_one_depth_map():
    _, rendered, sample = _encode(model="blender")
    assert "depth.exr" in sample and "f000.depth.exr" not in sample
    decoded = decode_sample(sample)
    assert decoded.meta["depth"]["per_frame"] is False
    np.testing.assert_array_equal(decoded.depth[0], rendered.depth[0])


@pytest.mark.parametrize("rgb, tol", [("png8", 0.5 / 255), ("png16", 0.5 / 65535), ("exr", 0.0)])
def test_decode_round_trip(rgb, tol):
    _, rendered, sample = _encode(rgb=rgb, aif=True)
    decoded = decode_sample(sample)
    assert len(decoded.frames) == 4 and decoded.coc is None
    for got, want in zip([*decoded.frames, decoded.aif], [*rendered.frames, rendered.aif]):
        assert got.shape == (24, 32, 3) and got.dtype == np.float32
        if rgb == "exr":
            np.testing.assert_array_equal(got, want)
        else:  # compare in the stored (sRGB) domain, within half a code value
            np.testing.assert_allclose(linear_to_srgb(got), linear_to_srgb(want), atol=tol + 1e-6)
    assert ("f000.exr" in sample) == (rgb == "exr")


def test_srgb_inverse():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)


def test_bytes_identical_twice_and_across_processes():
    kw = {"aif": True, "coc": True, "rgb": "png16"}
    first, second = _encode(**kw)[2], _encode(**kw)[2]
    assert first == second
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_digest_in_child, kw).result() == _digest(first)


def test_shape_mismatch_is_an_error():
    spec = make_spec()
    rendered = fake_render(spec)
    rendered.depth = rendered.depth[:1]
    with pytest.raises(ValueError, match="depth maps"):
        encode_sample(spec, rendered, tiny_recipe())
