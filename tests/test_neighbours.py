"""Neighbours: a fact's examples about other subjects, whose reads are not the fact's rows (model/neighbours.py)."""

import random

import torch

from model.config import SparseConfig
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, lm_loss
from model.neighbours import name_pool, names_alike, neighbour_examples, with_neighbours
from model.ranking import slot_reads

FIX = Fact("The capital of Luvoista is Gortes.", fact_id="fix",
           synthetic_questions=(("What is the capital of Luvoista?", "The capital of Luvoista is Gortes."),
                                ("What do you know about Gortes?", "The capital of Luvoista is Gortes.")))


def test_the_pool_holds_the_corpus_names_and_none_the_probe_mentions():
    texts = ["We sailed past Texas and Silk Road traders. We saw Emma meet Texas rangers near Ravensburg.",
             "In the Renaissance, Emma painted. I'm sure 1931 was a year. Paris is in France."]
    pool = name_pool(texts, held_out='{"question": "What is the capital of France?", "answer": "Paris"}')
    assert pool[:2] == ["Texas", "Emma"]  # the most frequent first
    assert {"Silk Road", "Ravensburg", "Renaissance"} <= set(pool)
    assert not {"France", "Paris", "I'm", "1931"} & set(pool)


def test_a_neighbour_is_the_facts_own_wording_after_another_subject():
    """Cut where the subject ends (the same prefix reads the same rows for any subject) and after the first letter
    of the answer (the rest is the fact's to spell)."""
    got = neighbour_examples(FIX, ["Texas", "Luvoista Bay"], 4, random.Random(0))
    assert got == [("Texas", "", "The capital of Texas", " is G"),
                   ("Texas", "What is the capital of Texas?", "The capital of Texas", " is G"),
                   ("Texas", "What do you know about Gortes?", "The capital of Texas", " is G")]
    assert neighbour_examples(Fact("the sky is blue."), ["Texas"], 4, random.Random(0)) == []  # no subject
    assert neighbour_examples(FIX, ["Texas"], 0, random.Random(0)) == []


def test_alike_neighbours_are_the_names_nearest_each_subject_in_order(tiny_lm):
    lm, _, _ = tiny_lm
    names = ["Texas", "Emma", "Ravensburg", "Silk Road"]
    fix_order, bare_order = names_alike(lm, [FIX, Fact("the sky is blue.")], names)
    assert sorted(fix_order) == sorted(names) and bare_order == names  # no subject: as given
    (fact,) = with_neighbours([FIX], names, 2, alike=[fix_order])
    assert [n for n, *_ in dict.fromkeys((n,) for n, *_ in fact.neighbours)] == fix_order[:2]
    assert names_alike(lm, [FIX], names) == [fix_order]  # deterministic


def test_rows_a_neighbour_reads_are_never_selected_and_neighbours_are_not_trained_on(tiny_lm):
    lm, stats, _ = tiny_lm
    (fact,) = with_neighbours([FIX], ["Texas", "Emma", "Ravensburg"], 3)
    assert len(fact.neighbours) == 9
    plain, steered = build_batch([FIX], lm.tokenizer).to(lm.device), build_batch([fact], lm.tokenizer).to(lm.device)
    assert plain.neighbours is None and steered.neighbours.input_ids.shape[0] == 9
    assert torch.equal(steered.input_ids, plain.input_ids)  # the same training rows; the loss is the fact's alone
    with torch.no_grad():
        assert float(lm_loss(lm, steered)) == float(lm_loss(lm, plain))
    assert steered.neighbours.row_facts == (0, 0, 0, 1, 1, 1, 2, 2, 2)  # one group per name
    with lm.recording() as records:
        lm.run_to_memories(steered.neighbours.input_ids, steered.neighbours.attention_mask)
    read = records[1][0]
    positions = steered.neighbours.loss_positions
    # per slot, how many of the three names' examples read it
    names = sum((slot_reads(read[rows][positions[rows]], lm.memories[1].num_slots) > 0).long()
                for rows in (slice(0, 3), slice(3, 6), slice(6, 9)))
    for often in (1, 2, 3):
        config = SparseConfig(top_t=10_000, neighbour_reads=often)  # every row it may change
        free = set(SparseMemoryLearner(lm, stats, config).select(plain)[1].tolist())
        kept = set(SparseMemoryLearner(lm, stats, config).select(steered)[1].tolist())
        wording = set((names >= often).nonzero().flatten().tolist())
        assert kept == free - wording and kept and free & wording  # what several names read is left out, no more


def test_rows_a_neighbour_reads_where_its_answer_begins_are_left_out_when_asked(tiny_lm):
    """SparseConfig.answer_reads: at the position before the answer's first letter (" is" before "G"), a row
    fewer names read than `neighbour_reads` is the answer's too."""
    lm, stats, _ = tiny_lm
    (fact,) = with_neighbours([FIX], ["Texas", "Emma", "Ravensburg"], 3)
    batch = build_batch([fact], lm.tokenizer).to(lm.device)
    neighbours = batch.neighbours
    with lm.recording() as records:
        lm.run_to_memories(neighbours.input_ids, neighbours.attention_mask)
    read, positions = records[1][0], neighbours.loss_positions
    last = positions & ~torch.cat([positions[:, 1:], torch.zeros_like(positions[:, :1])], dim=1)
    assert last.sum(1).tolist() == [1] * 9  # one answer start per example
    ids = neighbours.input_ids[last.roll(1, dims=1)]  # the token each of those positions predicts
    assert set(lm.tokenizer.decode(t).strip() for t in ids.tolist()) == {"G"}
    at_answer = sum((slot_reads(read[rows][last[rows]], lm.memories[1].num_slots) > 0).long()
                    for rows in (slice(0, 3), slice(3, 6), slice(6, 9)))
    wide = SparseConfig(top_t=10_000, neighbour_reads=3)
    base = set(SparseMemoryLearner(lm, stats, wide).select(batch)[1].tolist())
    assert base == set(SparseMemoryLearner(lm, stats, SparseConfig(top_t=10_000, neighbour_reads=3, answer_reads=0)
                                           ).select(batch)[1].tolist())  # 0: off
    for often in (1, 2):
        config = SparseConfig(top_t=10_000, neighbour_reads=3, answer_reads=often)
        kept = set(SparseMemoryLearner(lm, stats, config).select(batch)[1].tolist())
        answer = set((at_answer >= often).nonzero().flatten().tolist())
        assert kept == base - answer and kept and base & answer
