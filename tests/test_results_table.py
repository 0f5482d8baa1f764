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


def test_table_rows_published_numbers_commands_and_skips(table):
    metrics = {"mse_norm": 1.234e-3, "rms_norm": 0.0351, "accuracy": 91.5, "abs_rel": 0.0712, "delta1": 0.915}
    ddff, both = table.ROWS[0], next(row for row in table.ROWS if row.large)
    results = [table.ModelResult(ddff, "dfdgen train --model ddff", "dfdgen eval --checkpoint x", 12.3, metrics),
               table.ModelResult(both, "dfdgen train --model recurrent_ae", "dfdgen eval", 4.0, metrics)]
    text = table.format_results(results, ["`defocusnet` skipped: why"], scale="3 scenes",
                                recipe_line="sha256 `abc`", render_cmd="dfdgen render --recipe small_obj")
    assert "| DDFF (`ddff`) | 1.23e-03 | 0.035 | 91.50 | 0.071 | 0.915 | 12 |" in text
    assert "| recurrent AE, small+large objects (`recurrent_ae+large`) | 1.23e-03 |" in text
    assert "| LSTM-DDFF | 1.1e-03 | 0.033 | 94.98 |" in text and "| recurrent AE | 3.4e-03 | 0.058 | 69.02 |" in text
    assert "- `defocusnet` skipped: why" in text and "**Scale:** 3 scenes" in text
    for line in ("dfdgen train --model ddff", "dfdgen eval --checkpoint x", "sha256 `abc`",
                 "dfdgen render --recipe small_obj"):
        assert line in text


def test_recipe_overrides_load(table):
    from generator.recipe import load_recipe

    for name in ("small_obj", "large_obj"):
        recipe = load_recipe(name, table.recipe_overrides(10, 48, 4))
        assert (recipe.count, recipe.image.width, recipe.image.height, recipe.focus.ramps) == (10, 48, 48, 1)
