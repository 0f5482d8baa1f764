"""benchmarks/sweep_teacher.py's ROC AUC (no rendering): the share of (right, wrong) pixel pairs ranked right."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bench(torch):
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
        import sweep_teacher

        yield sweep_teacher


def test_roc_auc_counts_the_pairs_ranked_right_ties_as_half(bench, torch):
    label = torch.tensor([True, True, False, False, False])
    assert bench.roc_auc(torch.tensor([0.9, 0.8, 0.1, 0.2, 0.3]), label) == 1.0
    assert bench.roc_auc(torch.tensor([0.1, 0.2, 0.9, 0.8, 0.7]), label) == 0.0
    assert bench.roc_auc(torch.full((5,), 0.5), label) == 0.5
    generator = torch.Generator().manual_seed(0)
    score = torch.randint(0, 6, (300,), generator=generator).float()  # many ties
    label = torch.rand(300, generator=generator) < score / 8
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert bench.roc_auc(score, label) == pytest.approx(float(pairs.mean()), abs=1e-12)
