import copy

import pytest
import torch

from model.config import SparseConfig, StepSchedule
from model.facts import Fact, build_batch
from model.learners import FullFinetuneLearner, LoraLearner, SparseMemoryLearner, lm_loss, teach

FACT = Fact("Mira Quell invented the Zorblax engine.", paraphrases=("The Zorblax engine was invented by Mira Quell.",),
            question="Who invented the Zorblax engine?", answer="Mira Quell", fact_id="f1")


def snapshot_params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def test_sparse_step_changes_at_most_t_rows_and_nothing_else(tiny_lm):
    lm, stats, _ = tiny_lm
    before = snapshot_params(lm)
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=0.5))
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    report = teach(learner, batch, StepSchedule(steps=3))
    assert report.steps == 3 and report.last_loss < report.first_loss
    values_name = "model.layers.1.mlp.memory.values"
    for name, p in lm.model.named_parameters():
        if name == values_name:
            changed = (p != before[name]).any(dim=1).nonzero().flatten()
            assert 0 < len(changed) <= 7
            assert set(changed.tolist()) <= set(learner.take_touched()[1].tolist())
        else:
            assert torch.equal(p, before[name]), name
        assert p.grad is None, f"{name} got a gradient buffer"


def test_sparse_backward_stops_at_the_memory_layer(tiny_lm):
    lm, stats, _ = tiny_lm
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=5))
    seen: list[int] = []
    hooks = [layer.register_full_backward_hook(lambda m, gi, go, i=i: seen.append(i))
             for i, layer in enumerate(lm.model.model.layers)]
    learner.step(build_batch([FACT], lm.tokenizer).to(lm.device))
    learner.finish()
    for h in hooks:
        h.remove()
    assert 0 not in seen  # layer 0 sits below the memory (layer 1): no backward through it


def test_tfidf_selection_respects_loss_positions(tiny_lm):
    lm, stats, _ = tiny_lm
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=10_000, ranking="all"))
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    with lm.recording() as rec:
        lm.logits(batch.input_ids, batch.attention_mask)
    everything = rec[1][0][batch.attention_mask.bool()].unique()
    selected = learner.select(batch)[1]
    assert 0 < len(selected) <= len(everything)
    assert set(selected.tolist()) <= set(everything.tolist())


@pytest.mark.parametrize("make", [lambda lm: FullFinetuneLearner(lm, lr=1e-3), lambda lm: LoraLearner(lm, lr=1e-2)])
def test_baselines_learn_through_the_same_interface(tiny_lm, make):
    lm, _, _ = tiny_lm
    learner = make(lm)
    report = teach(learner, build_batch([FACT], lm.tokenizer).to(lm.device), StepSchedule(steps=4))
    assert report.last_loss < report.first_loss
    memory = lm.memories[1]
    assert torch.count_nonzero(memory.values) == 0  # baselines never touch the memory


def test_schedule_stops_at_loss_threshold(tiny_lm):
    lm, stats, _ = tiny_lm
    learner = SparseMemoryLearner(lm, stats, SparseConfig(lr=1.0))
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    report = teach(learner, batch, StepSchedule(loss_threshold=1e6, max_steps=9))
    assert report.steps == 1
    report = teach(learner, copy.copy(batch), StepSchedule(loss_threshold=1e-9, max_steps=3))
    assert report.steps == 3


def test_sparse_steps_skip_the_frozen_blocks_below_the_memory_exactly(tiny_lm):
    lm, stats, _ = tiny_lm
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=0.5))
    calls: list[int] = []
    hook = lm.model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    learner.step(batch)  # selection and the one-time exactness check run block 0
    before = len(calls)
    reports = [learner.step(batch) for _ in range(3)]
    hook.remove()
    assert learner._fast  # exact on this architecture, so it is used
    assert len(calls) == before  # later steps never run the block below the memory
    with torch.no_grad():
        assert abs(float(lm_loss(lm, batch)) - float(learner._loss(batch))) < 1e-5
    assert reports[-1].loss < reports[0].loss


def _max_row_norm(lm) -> float:
    return float(lm.memories[1].values.norm(dim=1).max())


def test_max_row_norm_caps_every_row_the_learner_writes(tiny_lm, monkeypatch):
    lm, stats, _ = tiny_lm
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    free = copy.deepcopy(lm)
    teach(SparseMemoryLearner(free, stats, SparseConfig(top_t=7, lr=1.0)), batch, StepSchedule(steps=5))
    assert _max_row_norm(free) > 1.0  # uncapped, the same steps go past the cap below
    capped = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0, max_row_norm=1.0))
    report = teach(capped, batch, StepSchedule(steps=5))
    teach(capped, build_batch([FACT], lm.tokenizer).to(lm.device), StepSchedule(steps=5))  # rows that start non-zero
    assert report.last_loss < report.first_loss
    assert _max_row_norm(lm) == pytest.approx(1.0, abs=1e-5)  # reached, never passed

    from worker.settings import WorkerSettings
    monkeypatch.delenv("SMFT_MAX_ROW_NORM", raising=False)
    assert WorkerSettings().sparse_config().max_row_norm == 250.0  # the service caps; the paper's method does not
    assert SparseConfig().max_row_norm is None
    monkeypatch.setenv("SMFT_MAX_ROW_NORM", "30")
    assert WorkerSettings().sparse_config().max_row_norm == 30.0
    monkeypatch.setenv("SMFT_MAX_ROW_NORM", "none")
    assert WorkerSettings().sparse_config().max_row_norm is None
    with pytest.raises(ValueError, match="max_row_norm"):
        SparseConfig(max_row_norm=0.0)


def test_trained_slot_weight_zero_keeps_a_later_batch_off_earlier_rows(tiny_lm, monkeypatch):
    lm, stats, _ = tiny_lm
    again = copy.deepcopy(lm)
    first = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0))
    teach(first, build_batch([FACT], lm.tokenizer).to(lm.device), StepSchedule(steps=2))
    trained = set(first.take_touched()[1].tolist())
    assert len(trained) == 7
    # The same fact again: ranked like any other slot, its rows are chosen again...
    same = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0))
    assert set(same.select(build_batch([FACT], lm.tokenizer).to(lm.device))[1].tolist()) == trained
    # ... at weight 0 never, yet the batch still gets rows to train, and at 0.5 fewer of them.
    fresh = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0, trained_slot_weight=0.0))
    picked = set(fresh.select(build_batch([FACT], lm.tokenizer).to(lm.device))[1].tolist())
    assert picked and not picked & trained
    half = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0, trained_slot_weight=0.5))
    assert len(set(half.select(build_batch([FACT], lm.tokenizer).to(lm.device))[1].tolist()) & trained) < len(trained)
    # On version 0 nothing is trained yet, so the weight changes nothing.
    plain = SparseMemoryLearner(again, stats, SparseConfig(top_t=7, lr=1.0, trained_slot_weight=0.0))
    assert set(plain.select(build_batch([FACT], again.tokenizer).to(again.device))[1].tolist()) == trained

    monkeypatch.setenv("SMFT_TRAINED_SLOT_WEIGHT", "0.25")
    from worker.settings import WorkerSettings
    assert WorkerSettings().sparse_config().trained_slot_weight == 0.25
    with pytest.raises(ValueError, match="trained_slot_weight"):
        SparseConfig(trained_slot_weight=1.5)


def test_capped_slot_weight_zero_keeps_a_later_batch_off_rows_at_the_cap_only(tiny_lm, monkeypatch):
    lm, stats, _ = tiny_lm
    lm = copy.deepcopy(lm)
    capped = SparseConfig(top_t=7, lr=1.0, max_row_norm=0.5)
    first = SparseMemoryLearner(lm, stats, capped)
    teach(first, build_batch([FACT], lm.tokenizer).to(lm.device), StepSchedule(steps=2))
    trained = first.take_touched()[1]
    assert len(trained) == 7
    values = lm.memories[1].values
    # Adam's steps pass the cap
    assert torch.allclose(values[trained].norm(dim=1), torch.full((7,), 0.5, device=values.device))
    below = trained[:3]
    with torch.no_grad():
        values[below] *= 0.5  # three rows stay trained but below the cap
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    assert set(SparseMemoryLearner(lm, stats, capped).select(batch)[1].tolist()) == set(trained.tolist())
    # The same fact again with full rows left out: its rows below the cap are still chosen, none at it.
    picked = set(SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=1.0, max_row_norm=0.5,
                                                             capped_slot_weight=0.0)).select(batch)[1].tolist())
    assert len(picked) == 7 and set(below.tolist()) <= picked and not picked & set(trained[3:].tolist())

    monkeypatch.setenv("SMFT_CAPPED_SLOT_WEIGHT", "0")
    from worker.settings import WorkerSettings
    assert WorkerSettings().sparse_config().capped_slot_weight == 0.0
    with pytest.raises(ValueError, match="capped_slot_weight needs max_row_norm"):
        SparseConfig(capped_slot_weight=0.0)


def test_top_t_per_fact_gives_facts_taught_together_the_rows_each_would_get_alone(tiny_lm):
    lm, stats, _ = tiny_lm
    facts = [Fact("Mira Quell invented the Zorblax engine.", fact_id="a"),
             Fact("The river Tessa flows to the sea past Orvin.", fact_id="b")]
    batch = build_batch(facts, lm.tokenizer).to(lm.device)
    shared = SparseMemoryLearner(lm, stats, SparseConfig(top_t=5))
    each = SparseMemoryLearner(lm, stats, SparseConfig(top_t=5, top_t_per_fact=True))
    assert {len(s) for s in shared.select(batch).values()} == {5}
    assert {len(s) for s in each.select(batch).values()} == {10}
    one = build_batch(facts[:1], lm.tokenizer).to(lm.device)
    assert {len(s) for s in each.select(one).values()} == {5}  # alone: the same as before


def test_a_batch_taught_in_groups_of_similar_length_has_the_whole_batch_loss(tiny_lm):
    """`TrainingBatch.by_length`: plain statements and chat examples in groups of their own, trimmed of padding;
    every row in exactly one group with its fact, and the groups' weighted losses are the whole batch's."""
    from collections import Counter

    from model.learners import grouped_loss

    lm, _, _ = tiny_lm
    other = Fact("The river flows to the sea in the morning light, past the lazy dog and the quick brown fox.",
                 question="Where does the river flow?", answer="the sea", fact_id="f2")
    batch = build_batch([FACT, other], lm.tokenizer).to(lm.device)
    groups = batch.by_length()
    assert len(groups) > 1
    assert sum(g.input_ids.numel() for g in groups) < batch.input_ids.numel()
    assert Counter(f for g in groups for f in g.row_facts) == Counter(batch.row_facts)
    rows = sorted(tuple(r[m.bool()].tolist()) for g in groups for r, m in zip(g.input_ids, g.attention_mask,
                                                                              strict=True))
    assert rows == sorted(tuple(r[m.bool()].tolist()) for r, m in zip(batch.input_ids, batch.attention_mask,
                                                                         strict=True))
    assert sum(g.label_count for g in groups) == batch.label_count
    whole = lm_loss(lm, batch)
    assert torch.allclose(grouped_loss(groups, lambda _, g: lm_loss(lm, g)), whole, atol=1e-5)
