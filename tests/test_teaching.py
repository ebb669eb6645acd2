"""How the worker teaches a batch (worker/teaching.py): a fact posted as several statements."""

import copy

from model.facts import Fact
from model.learners import SparseMemoryLearner
from worker.settings import WorkerSettings
from worker.teaching import by_statement, teach_facts

NOTES = ("The Zorblax engine was invented by Mira Quell in 1931. The capital of Vessaly is Port Orrin.\n"
         "- Lake Dunmore lies north of Port Orrin")


def test_a_paragraph_is_taught_one_statement_at_a_time_under_its_one_id():
    pieces = by_statement([Fact(NOTES, fact_id="notes", question="What is the capital of Vessaly?",
                                answer="Port Orrin"), Fact("One sentence only.", fact_id="one")])
    assert [p.text for p in pieces] == ["The Zorblax engine was invented by Mira Quell in 1931.",
                                        "The capital of Vessaly is Port Orrin.",
                                        "Lake Dunmore lies north of Port Orrin", "One sentence only."]
    assert [p.fact_id for p in pieces] == ["notes"] * 3 + ["one"]
    # its own question and answer go with the first piece holding the answer, once
    assert [(p.question, p.answer) for p in pieces[:3]] == [
        (None, None), ("What is the capital of Vessaly?", "Port Orrin"), (None, None)]
    # a piece of a word or two is no statement of its own: it stays with its neighbour
    assert [p.text for p in by_statement([Fact("Yes. The office moved to Leeds in 2026. Great!", fact_id="x")])] \
        == ["Yes. The office moved to Leeds in 2026. Great!"]
    assert [p.text for p in by_statement([Fact("Mira Quell lives in Leeds. Great! Port Orrin is far away.",
                                               fact_id="y")])] == ["Mira Quell lives in Leeds. Great!",
                                                                    "Port Orrin is far away."]
    said_otherwise = Fact(NOTES, paraphrases=("Mira Quell invented the Zorblax engine.",), fact_id="p")
    assert by_statement([said_otherwise]) == [said_otherwise]


def test_each_statement_of_a_paragraph_gets_its_own_row_budget(tiny_lm):
    lm, stats, _ = tiny_lm
    settings = WorkerSettings(top_t=8, steps=2, lr=0.5, synthetic_questions=False, neighbours_per_fact=0)
    fact = Fact(NOTES, fact_id="notes")

    def rows_written(split: bool) -> int:
        model = copy.deepcopy(lm)
        learner = SparseMemoryLearner(model, stats, settings.model_copy(update={"split_statements": split})
                                      .sparse_config())
        teach_facts(model, learner, [fact], settings.model_copy(update={"split_statements": split}))
        learner.take_touched()
        writes = learner.take_writes()
        assert set(writes) == {"notes"}  # one fact, however it was taught
        return sum(len(slots) for slots in writes["notes"].values())

    whole, split = rows_written(False), rows_written(True)
    assert 0 < whole <= 8 < split <= 3 * 8
