"""Undo records and reverting one version's change (model level, tiny model)."""

import torch

from model.config import SparseConfig, StepSchedule
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, lm_loss, teach
from model.undo import UndoRecord, revert

A = Fact("Mira Quell invented the Zorblax engine.", fact_id="a")
B = Fact("The river Tessa flows into the Quorn sea.", fact_id="b")


def taught(learner, lm, fact, version):
    teach(learner, build_batch([fact], lm.tokenizer).to(lm.device), StepSchedule(steps=15))
    return UndoRecord.capture(lm, version, [fact.fact_id], learner.take_touched_with_before())


@torch.no_grad()
def loss(lm, fact):
    return float(lm_loss(lm, build_batch([fact], lm.tokenizer).to(lm.device)))


def test_undo_record_round_trips(tiny_lm, tmp_path):
    lm, stats, _ = tiny_lm
    record = taught(SparseMemoryLearner(lm, stats, SparseConfig(top_t=20)), lm, A, 1)
    back = UndoRecord.load(record.save(tmp_path / "v1.safetensors"))
    assert back.version == 1 and back.fact_ids == ("a",)
    for layer, (ids, before, after) in record.rows.items():
        assert all(torch.equal(x, y) for x, y in zip((ids, before, after), back.rows[layer], strict=True))


def test_revert_takes_back_one_fact_and_keeps_the_later_one(tiny_lm):
    lm, stats, _ = tiny_lm
    values = lm.memories[1].values
    v0 = values.detach().clone().cpu()  # compared on the cpu, where undo records keep their rows
    loss_a0, loss_b0 = loss(lm, A), loss(lm, B)
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=200))
    record_a = taught(learner, lm, A, 1)
    taught(learner, lm, B, 2)
    loss_a2, loss_b2 = loss(lm, A), loss(lm, B)
    assert loss_a2 < loss_a0 - 0.3 and loss_b2 < loss_b0 - 0.3  # both learned

    v2 = values.detach().clone().cpu()
    changed = revert(lm, record_a)
    values = lm.memories[1].values.detach().cpu()
    ids_a = record_a.rows[1][0]
    assert torch.equal(changed[1], ids_a)
    # Rows only A changed are back to version 0 exactly; rows A never touched did not move.
    untouched_by_a = torch.ones(len(values), dtype=torch.bool)
    untouched_by_a[ids_a] = False
    assert torch.equal(values[untouched_by_a], v2[untouched_by_a])
    b_rows_after_a = (record_a.rows[1][2] != v2[ids_a]).any(dim=1)  # rows B changed after A
    assert torch.equal(values[ids_a][~b_rows_after_a], v0[ids_a][~b_rows_after_a])
    # Shared rows keep B's contribution: value = v2 - (A's after - A's before).
    _, before_a, after_a = record_a.rows[1]
    shared = ids_a[b_rows_after_a]
    assert torch.allclose(values[shared], v2[shared] - (after_a - before_a)[b_rows_after_a])
    # A's fact is forgotten again, B's is kept.
    assert loss(lm, A) > loss_a0 - 0.2 * (loss_a0 - loss_a2)
    assert loss(lm, B) < loss_b0 - 0.8 * (loss_b0 - loss_b2)
