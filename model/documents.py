"""From a document (a page of notes, an article) to the statements the service teaches one by one.

A paragraph taught as one fact teaches nothing (measured by `smft bench usage`: 0% of its facts
answered), because one long text spreads its steps and its memory rows over every subject in it.
So a document is cut into sentences (pysbd, a rule-based splitter that knows abbreviations,
decimals and initials) and each becomes a fact. A sentence is kept whole with what it cannot
stand without: one that opens with a pronoun ("She was born in 1890.") or is a fragment ("Yes.")
joins the sentence before it, and a heading or a lead-in ("Pricing:") joins the one after it,
so that every statement names its subject.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pysbd

# Words that open a sentence which only means something after the one before it.
_BACK_REFERENCES = frozenset(
    "he she it they his her its their him them this these that those there such both".split())
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6]|\d{1,3}[.)])\s+")
_TERMINAL = (".", "!", "?", "\u2026", '"', "'", ")", "\u201d")
MIN_WORDS = 3  # a sentence of fewer words is a fragment ("Yes.", "See above.")


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def _sentences(text: str) -> list[str]:
    """Sentences and list items, bullets stripped, whitespace collapsed."""
    out = []
    for line in text.splitlines():  # list items and headings end at the line, with or without a full stop
        line = _BULLET.sub("", line)
        for sentence in _segmenter().segment(line) if line.strip() else ():
            sentence = " ".join(sentence.split())
            if sentence:
                out.append(sentence)
    return out


def _leans_back(sentence: str) -> bool:
    words = sentence.split()
    return len(words) < MIN_WORDS or words[0].strip("\"'(").lower() in _BACK_REFERENCES


def _leans_forward(sentence: str) -> bool:
    """A heading or a lead-in: it introduces what follows rather than saying something itself."""
    return sentence.endswith(":") or (not sentence.endswith(_TERMINAL) and len(sentence.split()) < MIN_WORDS + 2)


def _wrap(sentence: str, max_chars: int) -> list[str]:
    """A sentence longer than `max_chars`, cut at clause marks, then between words."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts, current = [], ""
    for piece in re.split(r"(?<=[;,])\s+|\s+", sentence):
        joined = f"{current} {piece}".strip()
        if current and len(joined) > max_chars:
            parts.append(current)
            joined = piece
        current = joined
    return [*parts, current] if current else parts


MIN_STATEMENT_WORDS = 3  # fewer words than this: not a statement of its own (see statements_of)


def statements_of(text: str) -> list[str]:
    """The statements a fact's text holds, as the worker teaches them one by one (worker/teaching.by_statement) and
    the notes index them (model/notes.py): split as documents are, a piece of a few words ("Great!") kept with the
    piece before it, or the one after it when it comes first (no statement alone, and maybe too short to train on)."""
    out: list[str] = []
    for part in split_statements(text):
        if out and (len(part.split()) < MIN_STATEMENT_WORDS or len(out[-1].split()) < MIN_STATEMENT_WORDS):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def split_statements(text: str, max_chars: int = 400) -> list[str]:
    """The statements of a document, in order, each at most `max_chars` long where its words allow."""
    statements: list[str] = []
    lead_in = ""
    for sentence in _sentences(text):
        if _leans_forward(sentence):
            heading = sentence if sentence.endswith(":") else f"{sentence}:"
            lead_in = f"{lead_in} {heading}".strip()
            continue
        if lead_in:
            sentence, lead_in = f"{lead_in} {sentence}", ""
        elif statements and _leans_back(sentence) and len(statements[-1]) + len(sentence) < max_chars:
            statements[-1] = f"{statements[-1]} {sentence}"
            continue
        statements.extend(_wrap(sentence, max_chars))
    if lead_in:  # a document that ends on a heading: keep it rather than lose words
        if statements and len(statements[-1]) + len(lead_in) < max_chars:
            statements[-1] = f"{statements[-1]} {lead_in}"
        else:
            statements.extend(_wrap(lead_in, max_chars))
    return statements
