"""How the worker teaches one batch of facts: the model writes its own questions, then the sparse steps.

Kept apart from the loop, so a benchmark can teach exactly as the service does, without Redis.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import replace

from model.corpus import Corpus, load_corpus
from model.documents import statements_of
from model.facts import Fact, build_batch
from model.learners import Learner, SparseMemoryLearner, TeachReport, teach
from model.lm import MemoryLM
from model.locality import record_reads
from model.neighbours import name_pool, names_alike, with_neighbours
from model.probe import data_path
from model.questions import with_synthetic_questions
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)



@functools.cache
def background_corpus(background: tuple[str, ...]) -> Corpus:
    """The worker's background corpus (the default one when none is set), read once per process."""
    return load_corpus(list(background) or None)


@functools.cache
def neighbour_names(background: tuple[str, ...]) -> tuple[str, ...]:
    """Names to swap into a fact's questions: the background corpus' own, none that the retention probe
    (or the candidates it was drawn from) mentions. Read once per process and corpus."""
    held_out = "\n".join(data_path(name).read_text(encoding="utf-8")
                         for name in ("retention_probe.jsonl", "probe_candidates.jsonl"))
    return tuple(name_pool((d.text for d in background_corpus(background).train), held_out))


def by_statement(facts: Sequence[Fact]) -> list[Fact]:
    """Each fact whose text holds several statements (split as documents are) as one piece per statement, all
    under the fact's id, so each gets its own questions, neighbours and row budget, and undo takes back them
    all. Four facts posted as one paragraph were answered 0 of 24 by any question, taught whole (one question
    for the whole text, one fact's rows for four; `smft bench usage`), against what the same sentences posted
    one by one reach. A fact with paraphrases is one statement said several ways, and stays whole; its own
    question and answer go with the piece that holds the answer."""
    out: list[Fact] = []
    for fact in facts:
        parts = statements_of(fact.text) if not fact.paraphrases else []
        if len(parts) < 2:
            out.append(fact)
            continue
        answer = fact.answer.lower() if fact.answer else ""
        asked = next((i for i, part in enumerate(parts) if answer and answer in part.lower()), 0)
        out += [replace(fact, text=part, question=fact.question if i == asked else None,
                        answer=fact.answer if i == asked else None) for i, part in enumerate(parts)]
    return out


def teach_facts(lm: MemoryLM, learner: Learner, facts: Sequence[Fact], settings: WorkerSettings) -> TeachReport:
    """Teach one batch in place (the caller holds whatever lock guards `lm`). The worker's learner is sparse; a
    benchmark may pass a baseline, which trains on the same examples (neighbours and locality steer only which
    rows a sparse learner may change)."""
    if settings.split_statements:
        facts = by_statement(facts)
    if settings.synthetic_questions:
        facts = with_synthetic_questions(lm, facts, reverse=settings.reversed_questions,
                                         answer=settings.question_answer, writer=settings.question_writer)
    if settings.neighbours_per_fact:
        names = neighbour_names(tuple(str(p) for p in settings.background))
        seed = zlib.crc32("\n".join(f.text for f in facts).encode())  # the same batch draws the same names
        alike = names_alike(lm, facts, names) if settings.neighbours_alike else None
        facts = with_neighbours(facts, names, settings.neighbours_per_fact, seed, alike)
    sparse = isinstance(learner, SparseMemoryLearner)
    if settings.keep_weight > 0 and sparse and learner.others is None:  # once per learner: v0's reads do not change
        corpus = background_corpus(tuple(str(p) for p in settings.background))
        learner.others = record_reads(lm, corpus.rendered_train(lm.tokenizer))
    batch = build_batch(facts, lm.tokenizer).to(lm.device)
    report = teach(learner, batch, settings.sparse_config().schedule)
    log.info("batch of %d: loss %.3f -> %.3f in %d steps (%.2fs)", len(facts), report.first_loss,
             report.last_loss, report.steps, report.seconds)
    return report
