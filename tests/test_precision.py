"""Float32 precision of the drawn spec and the metadata (generator/core/precision.py): the bytes
do not follow the CPU's float64 exp and sin, which differ in the last bit between numpy's AVX-512
code and libm."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fakes import fake_render, tiny_recipe
from generator.core.precision import float32
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import draw_scene
from generator.scene.spec import SceneSpec


def _nudged(value, direction: float):
    """``value`` with every non-zero float moved one float64 ulp towards ``direction`` (an exact 0, as
    sin(0), is 0 on every CPU)."""
    if isinstance(value, float):
        return math.nextafter(value, direction) if value else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _nudged(getattr(value, f.name), direction)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, (list, tuple)):
        return type(value)(_nudged(v, direction) for v in value)
    return value


@pytest.mark.parametrize("overrides", [(), ("lens.aperture.blades=6", "lens.aperture.ratio=1.3")])
def test_a_spec_one_ulp_off_on_another_cpu_writes_the_same_bytes(overrides):
    recipe = tiny_recipe(*overrides)
    spec = draw_scene(recipe, 2)
    assert float32(spec) == spec and SceneSpec.from_dict(spec.to_dict()) == spec
    rendered = fake_render(spec)
    json_bytes = encode_sample(spec, rendered, recipe)["json"]
    for direction in (-math.inf, math.inf):
        other = _nudged(spec, direction)
        assert other != spec  # the nudge moved the floats ...
        assert float32(other) == spec  # ... and float32 precision takes them back
        assert encode_sample(float32(other), rendered, recipe)["json"] == json_bytes
    assert decode_sample(encode_sample(spec, rendered, recipe)).meta["scene"] == spec.to_dict()


def test_float32_keeps_the_shape_of_what_it_is_given_and_refuses_what_float32_cannot_hold():
    assert float32({"a": [0.1, (1.0000001234, 3)], "b": "x"}) == {"a": [0.1, (1.0000001, 3)], "b": "x"}
    assert float32(float("inf")) == math.inf and math.isnan(float32(float("nan")))
    with pytest.raises(ValueError, match="beyond float32's range"):
        float32(1e300)
