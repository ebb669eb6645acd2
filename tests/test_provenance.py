"""Provenance: the ledger of which fact wrote which row, kept equal on every replica, and `explain`."""

import pytest
import torch

from model.config import SparseConfig, StepSchedule
from model.evaluation import generate_answer_ids
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, teach
from model.prompting import chat_prompt
from model.provenance import RowWriters, answer_contributions
from model.snapshot import MemoryDelta, make_delta, read_snapshot, save_snapshot

A = Fact("Mira Quell invented the Zorblax engine.", fact_id="a")
B = Fact("The river Tessa flows to the sea.", fact_id="b")


def ids(*slots: int) -> torch.Tensor:
    return torch.tensor(slots, dtype=torch.long)


def test_the_ledger_replaces_a_retaught_fact_and_forgets_a_taken_back_one():
    ledger = RowWriters()
    ledger.update({"a": {1: ids(3, 4, 5)}, "b": {1: ids(5, 6), 2: ids(5)}})
    assert {i: r.tolist() for i, r in ledger.rows_of("a").items()} == {1: [3, 4, 5]}
    assert ledger.sharing("a") == {"b": 1}  # row 5 of layer 1; layer 2's row 5 is another row
    assert ledger.sharing("b") == {"a": 1}
    ledger.update({"a": {1: ids(7)}}, removed=["b"])  # a taught again after a revert, b taken back
    assert {i: r.tolist() for i, r in ledger.rows_of("a").items()} == {1: [7]}
    assert ledger.rows_of("b") == {} and ledger.sharing("a") == {}
    assert ledger.rows_of("never") == {} and ledger.sharing("never") == {}


def test_attribution_splits_a_shared_row_and_reports_what_no_fact_wrote():
    ledger = RowWriters()
    ledger.update({"a": {1: ids(0, 1)}, "b": {1: ids(1)}, "c": {1: ids(9)}})
    contributions = {1: torch.zeros(16, dtype=torch.float64)}
    contributions[1][0], contributions[1][1], contributions[1][2] = 2.0, 1.0, 1.0  # slot 2: no live writer
    sources, unattributed = ledger.attribute(contributions)
    assert [(s.fact_id, s.share, s.rows_read) for s in sources] == [("a", 0.625, 2), ("b", 0.125, 1)]
    assert unattributed == pytest.approx(0.25)  # c's row was not read: c is not a source
    assert ledger.attribute({1: torch.zeros(16)}) == ([], 0.0)  # an answer the memory added nothing to


def test_the_ledger_travels_in_deltas_and_snapshots(tiny_lm, tmp_path):
    lm, stats, _ = tiny_lm
    ledger = RowWriters()
    ledger.update({"a": {1: ids(3, 4)}, "b": {1: ids(4, 8)}})
    delta = MemoryDelta.from_bytes(make_delta(lm, 2, {1: ids(3, 4, 8)}, ["a", "b"], {"a": {1: ids(3, 4)}},
                                              undone=["b"]).to_bytes())
    assert {f: {i: s.tolist() for i, s in layers.items()} for f, layers in delta.writes.items()} == {"a": {1: [3, 4]}}
    assert delta.undone == ("b",)
    ledger.update(delta.writes, delta.undone)
    snap = read_snapshot(save_snapshot(lm, stats, 2, tmp_path / "v2.safetensors", ledger))
    assert snap.writers.names == ["a"]  # b owns nothing any more: left out of the file
    assert torch.equal(snap.writers.entries[0], ledger.entries[0])
    assert read_snapshot(save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")).writers.rows_of("a") == {}


def test_the_rows_each_fact_wrote_are_what_its_batch_changed(tiny_lm):
    """Each fact's writes are the selected rows its own examples read; together, every row the batch changed."""
    lm, stats, _ = tiny_lm
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=6, lr=0.5))
    batch = build_batch([A, B], lm.tokenizer).to(lm.device)
    teach(learner, batch, StepSchedule(steps=2))
    writes = learner.take_writes()
    touched = learner.take_touched()[1]
    assert set(writes) == {"a", "b"}
    assert set(writes["a"][1].tolist()) | set(writes["b"][1].tolist()) == set(touched.tolist())
    with lm.recording() as records:  # what A's examples read where its loss is, computed apart
        alone = build_batch([A], lm.tokenizer).to(lm.device)
        lm.logits(alone.input_ids, alone.attention_mask)
    read_by_a = set(records[1][0][alone.loss_positions].flatten().tolist())
    assert set(writes["a"][1].tolist()) == read_by_a & set(touched.tolist())
    assert learner.take_writes() == {}


def test_an_answer_is_attributed_to_the_fact_taught_and_the_reads_match_a_forward_over_it(tiny_lm):
    lm, stats, _ = tiny_lm
    question = "Who invented the Zorblax engine?"
    fact = Fact(A.text, question=question, answer="Mira Quell", fact_id="a")
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=20, lr=0.5))
    teach(learner, build_batch([fact], lm.tokenizer).to(lm.device), StepSchedule(steps=3))
    ledger = RowWriters()
    ledger.update(learner.take_writes())
    text, contributions = answer_contributions(lm, question, 6)
    answer_ids = generate_answer_ids(lm, [question], 6)[0]
    assert text == lm.tokenizer.decode(answer_ids, skip_special_tokens=True).strip()  # the same answer as served

    # The same reads from one forward over prompt + answer: the positions that produced each answer token.
    prompt = lm.encode(chat_prompt(lm.tokenizer, question))
    full = torch.tensor([prompt + answer_ids], device=lm.device)
    with lm.reads() as reads:
        lm.logits(full)
    slots, weights = reads[1][0]
    at = slice(len(prompt) - 1, len(prompt) - 1 + len(answer_ids))
    slots, weights = slots[0, at].flatten(), weights[0, at].flatten()
    norms = lm.memories[1].values.detach()[slots].norm(dim=-1)
    expected = torch.bincount(slots, weights=(weights * norms).double(), minlength=lm.memories[1].num_slots)
    assert torch.allclose(contributions[1], expected.cpu(), rtol=1e-4, atol=1e-6)

    sources, unattributed = ledger.attribute(contributions)
    assert contributions[1].sum() > 0  # the answer read trained rows
    assert [s.fact_id for s in sources] == ["a"] and sources[0].share == pytest.approx(1.0)
    assert unattributed == pytest.approx(0.0, abs=1e-9)  # every trained row is a's
