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
_WORD = re.compile(r"[\w'-]+")


def key_terms(statement: str) -> set[str]:
    """Names and numbers of a statement: capitalised words after the first, and words with digits."""
    words = _WORD.findall(statement)
    terms = {w for w in words[1:] if w[:1].isupper()} | {w for w in words if any(c.isdigit() for c in w)}
    return {t.lower().removesuffix("'s") for t in terms}


def usable_question(question: str, statement: str) -> bool:
    """A real question about this statement's own subject.

    It must end with '?', have a few words, and name one of the statement's key terms: a
    generic question ("What is the capital of a country?") would teach the fact as the answer
    to every question of its kind and overwrite what the model knew (measured: France's capital
    was forgotten after one fictional capital was taught that way).
    """
    question = question.strip()
    if not question.endswith("?") or len(question.split()) < 4 or "\n" in question:
        return False
    asked = {w.lower().removesuffix("'s") for w in _WORD.findall(question)}
    return bool(key_terms(statement) & asked)


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
