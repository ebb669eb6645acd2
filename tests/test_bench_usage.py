"""`smft bench usage` on the tiny model: every form taught the worker's way, every fact asked every way."""

import dataclasses
import functools

import pytest
import torch

from bench import retrieval, usage
from bench.facts import generate_facts, people_facts
from bench.report import usage_tables
from model.evaluation import contains_answer
from model.probe import read_probe
from tests.conftest import record_answers
from worker.settings import WorkerSettings


def test_posts_are_what_people_send_in_each_form():
    facts = generate_facts(6)
    paraphrased, bare, paragraphs, document = (usage.posts(facts, form) for form in usage.FORMS)
    assert [p.paraphrases for p in paraphrased] == [f.fact.paraphrases for f in facts]
    assert all(not p.paraphrases and not p.question for p in bare) and [p.text for p in bare] == [
        f.fact.text for f in facts]
    assert len(paragraphs) == 2 and all(f.fact.text in paragraphs[i // 4].text for i, f in enumerate(facts))
    assert [p.text for p in document] == [f.fact.text for f in facts]  # split back into its sentences


def test_each_way_of_asking_has_its_own_gold():
    fact = generate_facts(2)[1]  # a capital
    assert usage.asked(fact, "question") == (fact.question, fact.answer)
    lower, gold = usage.asked(fact, "lower case, no ?")
    assert lower == fact.question.lower()[:-1] and gold == fact.answer
    assert usage.asked(fact, "reversed") == (fact.reversed, fact.subject) and fact.subject in fact.fact.text
    assert fact.reworded not in (fact.question, "") and fact.answer in fact.fact.text
    system, _ = usage.asked(fact, "chat with system prompt")
    chat, _ = usage.asked(fact, "third turn of a chat")
    assert system[0]["role"] == "system" and [m["role"] for m in chat] == ["user", "assistant", "user"]
    assert system[-1]["content"] == chat[-1]["content"] == fact.question


def test_every_generated_fact_s_golds_are_whole_names_its_statement_holds():
    for fact in generate_facts(24):  # the twelve relations twice
        assert contains_answer(fact.fact.text, fact.answer) and contains_answer(fact.fact.text, fact.subject)
    element = next(f for f in generate_facts(24) if f.kind == "discoverer")
    assert element.subject.endswith("ium") and usage.asked(element, "reversed")[1] == element.subject


def test_people_s_statements_carry_their_golds_and_keep_the_held_out_ones_apart():
    dev, test, fresh, every = people_facts("dev"), people_facts("test"), people_facts("fresh"), people_facts()
    assert (len(dev), len(test), len(fresh)) == (12, 24, 36) and every == dev + test + fresh
    assert people_facts(["dev", "test"]) == dev + test
    assert len({f.fact.text for f in every}) == 72 and len({f.fact.fact_id for f in every}) == 72
    for fact in every:  # bare statements, each way of asking with a gold the statement holds
        assert not fact.fact.paraphrases and fact.answer in fact.fact.text and fact.subject in fact.fact.text
        assert len({fact.question, fact.reworded, fact.reversed}) == 3
        assert all(q.endswith("?") for q in (fact.question, fact.reworded, fact.reversed))
    with pytest.raises(ValueError, match="split"):
        people_facts("train")
    with pytest.raises(ValueError, match="split"):
        people_facts(["dev", "tset"])


def test_corrections_contradict_capitals_version_0_knows_and_keep_the_others_as_neighbours():
    probe = read_probe()
    fixes, neighbours = usage.corrections(probe, 3, seed=1)
    assert len(fixes) == 3 and len({c.new for c in fixes}) == 3
    for c in fixes:
        country = c.question.removeprefix("What is the capital of ").rstrip("?")
        assert c.statement == f"The capital of {country} is {c.new}." and c.old != c.new
    assert not {c.question for c in fixes} & {q.question for q in neighbours}
    assert all(q.question.startswith("What is the capital of ") for q in neighbours)


def test_every_form_and_the_corrections_are_measured_and_a_stopped_run_resumes(tiny_lm, tmp_path, monkeypatch):
    lm, stats, _ = tiny_lm
    settings = WorkerSettings(batch_facts=2, steps=2, lr=0.5)
    facts = generate_facts(4)
    probe = read_probe()[:4]
    fixes, neighbours = usage.corrections(read_probe(), 2)
    key = {"seed": 0}
    results = usage.run_usage(lm, stats, settings, facts, fixes, neighbours[:4], probe, tmp_path, key)
    assert [r.name for r in results] == [*usage.FORMS, "corrections"]
    for r in results[:4]:
        assert list(r.answered) == list(usage.ASKS) and all(0 <= v <= 1 for v in r.answered.values())
        assert r.steps == 2 * r.batches and r.facts == 4 and 0 <= r.explained <= 1
        for how, missed in r.misses.items():  # each miss kept to be read, and only misses
            assert len(missed) == round((1 - r.answered[how]) * 4)
            assert not any(contains_answer(m["reply"], m["expected"]) for m in missed)
    # 4 facts in 2s; one paragraph; the paragraph's 4 sentences in 2s; 2 corrections in one batch
    assert [r.batches for r in results] == [2, 2, 1, 2, 1]
    assert set(results[4].answered) == {"new answer", "old answer gone", "neighbours kept"}
    assert len(results[4].misses["new answer"]) == round((1 - results[4].answered["new answer"]) * 2)
    table = usage_tables(results)
    assert "| paragraph | 4 |" in table and "| corrections |" in table and "explain names its post" in table

    monkeypatch.setattr(usage, "run_form", lambda *a, **k: pytest.fail("measured again instead of resumed"))
    monkeypatch.setattr(usage, "run_corrections", lambda *a, **k: pytest.fail("measured again instead of resumed"))
    assert usage.run_usage(lm, stats, settings, facts, fixes, neighbours[:4], probe, tmp_path, key) == results
    monkeypatch.undo()
    other = dataclasses.replace(results[0], name="x")
    monkeypatch.setattr(usage, "run_form", lambda *a, **k: other)  # another run's key: measured anew
    assert usage.run_usage(lm, stats, settings, facts, [], [], probe, tmp_path, {"seed": 1}, forms=usage.FORMS[:1]) \
        == [other]


def test_retrieval_teaches_nothing_and_puts_the_notes_into_every_way_of_asking(tiny_lm, tmp_path, monkeypatch):
    from bench.retrieval import Retriever

    lm, stats, _ = tiny_lm
    values = {i: m.values.detach().clone() for i, m in lm.memories.items()}
    facts = generate_facts(4)
    fixes, neighbours = usage.corrections(read_probe(), 2)
    results = usage.run_usage(lm, stats, WorkerSettings(batch_facts=2, steps=2), facts, fixes, neighbours[:4],
                              read_probe()[:4], tmp_path, {"method": "retrieval"}, forms=usage.FORMS[1:2],
                              retrieval=Retriever)
    assert [r.name for r in results] == ["bare statement", "corrections"]
    assert all(r.batches == r.steps == 0 and r.explained is None for r in results)
    assert all(torch.equal(m.values, values[i]) for i, m in lm.memories.items())
    assert "| bare statement | 4 |" in usage_tables(results)

    both = usage.run_usage(lm, stats, WorkerSettings(batch_facts=2, steps=2), facts, [], [], read_probe()[:4],
                           tmp_path / "both", {"method": "service+retrieval"}, forms=usage.FORMS[1:2],
                           retrieval=Retriever, teach=True)
    assert both[0].batches == 2 and both[0].steps == 4 and both[0].explained is not None  # taught as well

    _, read_memory, _ = record_answers(monkeypatch, retrieval)
    usage.run_usage(lm, stats, WorkerSettings(batch_facts=2, steps=2), facts, fixes, neighbours[:4], read_probe()[:4],
                    tmp_path / "scoped", {"method": "service, scoped"}, forms=usage.FORMS[1:2],
                    retrieval=functools.partial(Retriever, min_match=0.5), teach=True, scoped=True)
    assert all(read_memory[f.question] for f in facts)  # each finds its note: the memory answers
    assert all(read_memory[c.question] for c in fixes)  # a correction's question finds the correction
    others = [q.question for q in [*read_probe()[:4], *neighbours[:4]] if q.question not in {c.question for c in fixes}]
    assert others and not any(read_memory[q] for q in others)  # real capitals find no note: as version 0

    notes = Retriever()
    notes.add([f.fact for f in facts])
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": facts[0].question}]
    with_notes = notes.chat(chat)
    assert with_notes[0]["content"].startswith("Be brief.\n\n") and facts[0].fact.text in with_notes[0]["content"]
    assert with_notes[1:] == chat[1:]
    assert notes.chat(chat[1:])[0]["role"] == "system"  # no system prompt of its own: one is added
    assert notes.chat([{"role": "user", "content": "zzz qqq"}]) == [{"role": "user", "content": "zzz qqq"}]


@pytest.mark.parametrize("method", ["full:1e-5", "retrieval:2", "nonsense"])
def test_a_method_the_usage_bench_cannot_run_is_refused_before_any_work(method, tmp_path):
    from cli.main import main

    with pytest.raises(SystemExit, match="--method"):
        main(["bench", "usage", "--method", method, "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())
