"""Questions the model writes about a fact's statements, to teach the fact in question form.

A statement alone teaches the model to continue that sentence; a query, though, arrives as a
question in a chat turn, and the memory slots a question reads overlap little with those its
statement reads. Like the paper's synthetic rewrites, the base model itself turns each
statement into a question; the pairs (question, statement) become extra training examples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from model.evaluation import generate_answers
from model.facts import Fact
from model.lm import MemoryLM

QUESTION_PROMPT = "Turn this statement into a question: {statement}"
_WORD = re.compile(r"[A-Za-z0-9]{4,}")


def usable_question(question: str, statement: str) -> bool:
    """A real question about the statement: ends with '?', a few words, shares a content word."""
    question = question.strip()
    if not question.endswith("?") or len(question.split()) < 4 or "\n" in question:
        return False
    shared = {w.lower() for w in _WORD.findall(question)} & {w.lower() for w in _WORD.findall(statement)}
    return bool(shared)


def with_synthetic_questions(lm: MemoryLM, facts: Sequence[Fact], max_new_tokens: int = 32) -> list[Fact]:
    """The facts, each with (question, statement) pairs written by the model (one generation batch)."""
    pairs = [(i, s) for i, fact in enumerate(facts) for s in fact.statements]
    questions = generate_answers(lm, [QUESTION_PROMPT.format(statement=s) for _, s in pairs], max_new_tokens)
    found: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(facts))}
    for (i, statement), question in zip(pairs, questions, strict=True):
        question = question.strip()
        if usable_question(question, statement) and question not in [q for q, _ in found[i]]:
            found[i].append((question, statement))
    return [replace(fact, synthetic_questions=tuple(found[i])) for i, fact in enumerate(facts)]
