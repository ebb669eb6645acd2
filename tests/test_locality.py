"""The locality penalty (model/locality.py): what trained rows add where other text reads them."""

import copy
from dataclasses import replace

import torch

from model.config import SparseConfig, StepSchedule
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, teach
from model.locality import change_penalty, record_reads
from tests.conftest import TINY_DOCS

FACT = Fact("The river Zorblax flows into the sea of Quell in the morning light.", fact_id="f1")



def trained_rows_change(reads, values: torch.Tensor, idx: int) -> float:
    """change_penalty over the rows training wrote (the nonzero ones), indexed as attach_trainable_rows does."""
    rows = values.abs().sum(1).nonzero().flatten()
    row_of_slot = torch.full((len(values),), len(rows), dtype=torch.long, device=values.device)
    row_of_slot[rows] = torch.arange(len(rows), device=values.device)
    return float(change_penalty(reads, idx, row_of_slot, values[rows]))

def test_the_penalty_is_the_mean_squared_change_at_the_positions_that_read_the_rows(tiny_lm):
    lm, _, _ = tiny_lm
    others = record_reads(lm, TINY_DOCS[:4])
    idx = next(iter(lm.memories))
    slots, weights = others.slots[idx], others.weights[idx]
    assert slots.shape == weights.shape and slots.shape[0] == sum(len(lm.encode(d)) for d in TINY_DOCS[:4])
    selected = slots[:3].flatten().unique()[:5]
    kept = others.reading({idx: selected})
    assert 0 < kept.positions(idx) < others.positions(idx)
    rows = torch.randn(len(selected), lm.hidden_size)
    row_of_slot = torch.full((lm.memories[idx].num_slots,), len(selected), dtype=torch.long)
    row_of_slot[selected] = torch.arange(len(selected))
    expected = []
    for p_slots, p_weights in zip(kept.slots[idx], kept.weights[idx], strict=True):
        added = torch.zeros(lm.hidden_size)
        for s, w in zip(p_slots.flatten().tolist(), p_weights.flatten().tolist(), strict=True):
            if s in selected.tolist():
                added += w * rows[selected.tolist().index(s)]
        expected.append(added.pow(2).sum())
    assert torch.allclose(change_penalty(kept, idx, row_of_slot, rows), torch.stack(expected).mean(), rtol=1e-4)


def test_with_the_penalty_the_rows_change_other_text_less(tiny_lm):
    lm, stats, _ = tiny_lm
    others = record_reads(lm, TINY_DOCS)
    idx = next(iter(lm.memories))

    def change_at_others(keep_weight: float) -> float:
        model = copy.deepcopy(lm)
        learner = SparseMemoryLearner(model, stats, SparseConfig(top_t=12, lr=0.5, keep_weight=keep_weight), others)
        teach(learner, build_batch([FACT], model.tokenizer).to(model.device), StepSchedule(steps=6))
        return trained_rows_change(others, model.memories[idx].values.detach(), idx)

    assert change_at_others(1.0) < 0.5 * change_at_others(0.0)


def test_with_the_penalty_the_rows_change_the_neighbours_answers_less(tiny_lm):
    """No background text here: the batch's own neighbours (the fact's wording about other names) are kept."""
    from model.neighbours import with_neighbours

    lm, stats, _ = tiny_lm
    (fact,) = with_neighbours([FACT], ["Texas", "Emma", "Ravensburg", "Silk Road"], 4)
    batch = build_batch([fact], lm.tokenizer).to(lm.device)
    idx = next(iter(lm.memories))

    def change_at_neighbours(keep_weight: float) -> float:
        model = copy.deepcopy(lm)
        config = SparseConfig(top_t=12, lr=0.5, keep_weight=keep_weight, neighbour_reads=5)  # no row left out
        learner = SparseMemoryLearner(model, stats, config)
        teach(learner, batch, StepSchedule(steps=6))
        assert learner._kept == [] and learner._neighbours_read is None  # the batch ended: nothing held
        # the measuring tool: what a learner with the penalty on keeps (reads do not depend on the values)
        measure = SparseMemoryLearner(model, stats, replace(config, keep_weight=1.0))
        measure._neighbour_reads(batch.neighbours)
        neighbours = measure._neighbours_read
        assert neighbours is not None and neighbours.positions(idx) > 0
        return trained_rows_change(neighbours, model.memories[idx].values.detach(), idx)

    with_penalty, without = change_at_neighbours(1.0), change_at_neighbours(0.0)
    assert with_penalty < 0.5 * without
