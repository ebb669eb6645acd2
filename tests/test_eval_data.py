"""The committed evaluation data: fictional facts and the curated retention probe."""

from bench.facts import RELATIONS, generate_facts
from model.evaluation import contains_answer, token_f1
from model.probe import ProbeQuestion, data_path, read_probe


def test_fact_generator_is_deterministic_and_covers_every_relation():
    facts = generate_facts(60, seed=3)
    assert facts == generate_facts(60, seed=3) and facts != generate_facts(60, seed=4)
    assert len(RELATIONS) >= 10 and {f.kind for f in facts} == {r.kind for r in RELATIONS}
    assert len({f.question for f in facts}) == 60
    for f in facts:
        assert len(f.fact.paraphrases) >= 4
        assert all(f.answer in s for s in f.fact.statements)  # every wording carries the answer
        assert f.question not in f.fact.statements


def test_probe_is_curated_from_the_candidates():
    probe = read_probe()
    candidates = {q.question for q in read_probe(data_path("probe_candidates.jsonl"))}
    assert len(probe) >= 200 and len(candidates) > len(probe)
    assert {q.question for q in probe} <= candidates


def test_probe_answers_and_scores():
    q = ProbeQuestion("How many legs does a spider have?", "eight", ("8",))
    assert q.correct("A spider has 8 legs.") and q.correct("Eight.") and not q.correct("Six legs.")
    assert contains_answer("The capital is Paris.", "paris") and not contains_answer("Parisian", "Paris")
    assert contains_answer("Project Bluefin's deadline is March 14.", "Bluefin")  # a possessive names it
    assert contains_answer("Bluefin\u2019s deadline", "Bluefin") and contains_answer("Bluefin's", "Bluefin's")
    assert token_f1("Mira Quell", "mira quell") == 1.0 and 0 < token_f1("Dr. Mira Quell", "Mira Quell") < 1
