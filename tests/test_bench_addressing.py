from dataclasses import replace

import pytest

from bench.addressing import answer_contexts, answer_overlap, last_position_slots
from bench.facts import EvalFact, generate_facts
from model.facts import Fact


def test_contexts_end_right_before_the_answer(tiny_lm):
    lm, _, _ = tiny_lm
    fact = EvalFact(Fact("The capital of Vessaly is Lunetta.", paraphrases=("Lunetta rules Vessaly.",
                                                                           "Vessaly's capital is Lunetta.")),
                    "What is the capital of Vessaly?", "Lunetta", "capital")
    chat, plain = answer_contexts(fact, lm.tokenizer)
    assert chat.endswith("The capital of Vessaly is") and "What is the capital of Vessaly?" in chat
    assert plain == "Vessaly's capital is"  # the paraphrase that opens with the answer is skipped
    assert answer_contexts(replace(fact, fact=Fact("Lunetta rules Vessaly.")), lm.tokenizer) is None


def test_reads_are_taken_at_each_text_own_last_token(tiny_lm):
    lm, _, _ = tiny_lm
    short, long = "The capital of Vessaly is", "Lunetta is the capital city of Vessaly, and it is"
    alone = last_position_slots(lm, [short])
    padded = last_position_slots(lm, [short, long])  # right padding must not move the short text's read
    memory = next(iter(lm.memories.values()))
    for layer, rows in alone.items():
        assert rows[0] == padded[layer][0] != padded[layer][1]
        assert 0 < len(rows[0]) <= memory.config.heads * memory.config.topk


def test_overlaps_over_generated_facts(tiny_lm):
    lm, _, _ = tiny_lm
    facts = generate_facts(24)
    report = answer_overlap(lm, facts)
    assert set(report) == set(lm.memories)
    for row in report.values():
        assert row.facts == len(facts)
        assert all(0.0 <= v <= 1.0 for v in (row.same_fact, row.same_phrasing, row.other_relation))
    # The same fact twice (one relation, same phrasing) reads the same slots: overlap exactly 1.
    twice = answer_overlap(lm, [facts[0], facts[1], facts[0]])
    assert all(row.same_phrasing == 1.0 and row.other_relation < 1.0 for row in twice.values())


def test_too_few_usable_facts_is_an_error(tiny_lm):
    lm, _, _ = tiny_lm
    with pytest.raises(ValueError, match="two facts"):
        answer_overlap(lm, generate_facts(1))
