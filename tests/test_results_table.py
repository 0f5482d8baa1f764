"""benchmarks/results_table.py's Markdown (no rendering or training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def table(torch):
    """The benchmark module (imports dfd_models.networks, so torch)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py"
    spec = importlib.util.spec_from_file_location("results_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _regions(abs_rel: float, objects: bool = True) -> dict:
    every = {"abs_rel": abs_rel, "delta1": 0.915, "rms_norm": 0.0351, "accuracy": 91.5, "inv_mae": 0.2,
             "pearson": 0.0}
    return {"all": every, "objects": {**every, "abs_rel": 2 * abs_rel, "delta1": 0.5, "pearson": 0.71}
            if objects else None}


def test_table_rows_regions_references_ablation_published_numbers_and_commands(table):
    constant, ddff = table.ROWS[0], next(row for row in table.ROWS if row.model == "ddff")
    both = next(row for row in table.ROWS if row.large)
    sdgs = next(row for row in table.ROWS if row.model == "sdgs")
    results = [table.ModelResult(constant, "dfdgen train --model constant", "dfdgen eval --checkpoint c", 1.0,
                                 _regions(0.3)),
               table.ModelResult(ddff, "dfdgen train --model ddff", "dfdgen eval --checkpoint x", 12.3,
                                 _regions(0.0712)),
               table.ModelResult(both, "dfdgen train --model recurrent_ae", "dfdgen eval", 4.0,
                                 _regions(0.1, objects=False)),
               table.ModelResult(sdgs, "dfdgen train --model sdgs", "dfdgen eval", 9.0, _regions(0.2))]
    radiance_frame = next(row for row in table.ABLATIONS if row.run == "sdgs-radiance_frame")
    ablations = [results[-1], table.ModelResult(radiance_frame, "dfdgen train --model sdgs --set "
                                                "model.config.radiance=frame", "dfdgen eval", 8.0, _regions(0.4))]
    text = table.format_results(results, ["`defocusnet` skipped: why"], recipe="small_obj", scale="3 scenes",
                                recipe_line="sha256 `abc`", render_cmd="dfdgen render --recipe small_obj",
                                ablations=ablations, ablation_scale="2 steps", figure="RESULTS_small_obj.png")
    assert "| DDFF (`ddff`) | 0.142 | 0.500 | 0.200 | 0.71 | 0.071 | 0.915 | 0.035 | 91.50 | 12 |" in text
    assert "| constant (training median) (`constant`) | 0.600 |" in text
    assert "| recurrent AE, small+large objects (`recurrent_ae+large`) | - | - | - | - | 0.100 |" in text
    assert "## Ablation of sdgs" in text and "(2 steps)" in text
    assert "| radiance = the input frame, not the stack's sharpest pixels (`sdgs-radiance_frame`) | 0.800 |" in text
    assert text.count("(`sdgs`) | 0.400 |") == 2  # the main table and the ablation's first row
    assert "| LSTM-DDFF | 1.1e-03 | 0.033 | 94.98 |" in text and "| recurrent AE | 3.4e-03 | 0.058 | 69.02 |" in text
    assert "- `defocusnet` skipped: why" in text and "**Scale:** 3 scenes" in text
    assert "![input frame, true depth and each model's depth](RESULTS_small_obj.png)" in text
    for line in ("dfdgen train --model ddff", "dfdgen eval --checkpoint x", "sha256 `abc`",
                 "dfdgen render --recipe small_obj", "--set model.config.radiance=frame"):
        assert line in text
    fod = table.format_results(results[:1], [], recipe="fod500", scale="s", recipe_line="r", render_cmd="c")
    assert "| DEReD (self-supervised; Si et al., CVPR 2023) | 0.746 | 0.351 | 0.177 |" in fod
    assert "| LSTM-DDFF |" not in fod and "Ablation" not in fod


def test_every_row_and_ablation_is_a_registered_model_with_valid_overrides(table):
    from dfd_models.networks import MODELS

    assert [row.model for row in table.REFERENCES] == ["constant", "dff", "dfd_sweep"]
    assert all(not MODELS[row.model].trainable for row in table.REFERENCES)
    for row in table.ABLATIONS:
        assert MODELS["sdgs"].resolve_config(dict(row.config)) != MODELS["sdgs"].default_config()
        assert row.sets == [f"model.config.{key}={value}" for key, value in row.config]
    assert len({row.run for row in table.ROWS + table.ABLATIONS}) == len(table.ROWS + table.ABLATIONS)


def test_recipe_overrides_load(table):
    from generator.recipe import load_recipe

    for name in ("small_obj", "large_obj", "fod500"):
        recipe = load_recipe(name, table.recipe_overrides(name, 10, 48, 4))
        assert (recipe.count, recipe.image.width, recipe.image.height, recipe.focus.ramps) == (10, 48, 48, 1)
        assert recipe.focus.frames_per_ramp == table.FRAMES


def test_no_page_quotes_a_machines_absolute_path(table):
    """Pages quote `dfdgen ...` with paths relative to the benchmark's output folder, anyone can paste them."""
    import re

    docs = Path(__file__).parents[1] / "docs"
    for page in docs.glob("*.md"):
        found = re.findall(r"(?<![\w.])/(?:work|tmp|root|home|Users)/\S+", page.read_text())
        assert not found, (page.name, found[:3])
    out = Path("/data/bench")
    assert table.portable("/data/bench/runs/x --out-dir /data/bench", out) == "runs/x --out-dir OUT"
