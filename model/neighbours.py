"""Neighbours: a fact's own examples about other subjects, whose reads tell which rows are not the fact's.

A fact's question and statement share their wording with those about other subjects ("What is the
capital of Qatar?" / "... of Peru?"), and TF-IDF against background text does not see it: eight
corrections of capitals taught in the service's batches left 22% of the other capitals answered,
their answers made of the corrections' city names, each drawing on rows of all eight. Swapping the
fact's subject for other names gives examples that read what the wording reads; a row that the
examples of `SparseConfig.neighbour_reads` or more different names read is the wording's, not the
fact's, and is not selected (`SparseMemoryLearner.select`). Names, not reads, are counted: a fact
posted with four paraphrases and its questions has a dozen examples per name, and a row one name's
examples read many times is that name's (counting reads left the inventors' "was invented by K"
without a row to learn from: 0 of 4 answered, 2 of 4 without neighbours).
Neighbours are never trained on and cost one forward up to the memory layer per batch.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from model.batching import pad_rows
from model.facts import Fact
from model.lm import MemoryLM
from model.questions import names_of, subject_of

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NAME = re.compile(r"[A-Z][a-z]+(?:[- ][A-Z][a-z]+){0,2}")


def name_pool(texts: Iterable[str], held_out: str = "", size: int = 200) -> list[str]:
    """The most frequent names in `texts` (1 to 3 capitalised words, letters only), leaving out any that
    `held_out` mentions (the retention probe's questions: what measures forgetting is never used here). A word
    that opens its sentence alone is not taken for a name: over many sentences those are mostly common words
    ("Coffee", "Gravity"), which one statement's subject may be but a pool of names must not hold."""
    counts: Counter[str] = Counter()
    for text in texts:
        for sentence in _SENTENCE_END.split(text):
            counts.update(n for n in names_of(sentence, first_word=False) if _NAME.fullmatch(n) and len(n) >= 4)
    return [name for name, _ in counts.most_common() if name not in held_out][:size]


# A name read in this frame: its hidden state there says what kind of thing it names (a country lies near other
# places, a person near people), which the name read alone does not ("Qatar" came nearest "Elixir", "Zara").
NAME_FRAME = "This is about {}"


@torch.no_grad()
def name_vectors(lm: MemoryLM, names: Sequence[str]) -> torch.Tensor:
    """[len(names), hidden] unit vectors: each name in NAME_FRAME as the lowest memory layer's input reads it,
    at its last token (the memory does not change it: version 0's and any later version's are the same)."""
    rows = [lm.tokenizer(NAME_FRAME.format(n), add_special_tokens=False)["input_ids"] for n in names]
    ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
    hidden = lm.run_to_memories(ids.to(lm.device), mask.to(lm.device))
    last = hidden[torch.arange(len(rows), device=hidden.device), mask.to(hidden.device).sum(1) - 1]
    return F.normalize(last.float(), dim=-1).cpu()


def names_alike(lm: MemoryLM, facts: Sequence[Fact], names: Sequence[str]) -> list[list[str]]:
    """Per fact, `names` ordered from the most to the least like its subject (NAME_FRAME); unordered (as given)
    for a fact without a subject."""
    subjects = [subject_of(f.text) for f in facts]
    asked = [s for s in subjects if s]
    if not asked or not names:
        return [list(names) for _ in facts]
    pool = name_vectors(lm, names)
    alike = iter((name_vectors(lm, asked) @ pool.T).argsort(dim=1, descending=True).tolist())
    return [[names[i] for i in next(alike)] if s else list(names) for s in subjects]


def neighbour_examples(fact: Fact, names: Sequence[str], per_fact: int, rng: random.Random | None
                       ) -> list[tuple[str, str, str, str]]:
    """(name, question or '', prefix, wording): each of the fact's examples with its subject swapped for one of
    `per_fact` other names, cut where the subject ends (what comes before it reads the same rows for every
    subject) and after the first letter of the fact's other names (what follows is the fact's own answer,
    which it must be free to spell). Only the wording is read for its rows. With `rng`, the names are drawn at
    random; without, the first `per_fact` of them are taken (`names_alike` orders them)."""
    subject = subject_of(fact.text)
    if not subject or per_fact < 1:
        return []
    own = [("", s) for s in fact.statements] + list(fact.synthetic_questions)
    if fact.question:
        own += [(fact.question, s) for s in fact.statements]
    answers = [n for n in names_of(fact.text) if n != subject]
    others = [n for n in names if subject not in n and n not in subject]
    out: list[tuple[str, str, str, str]] = []
    for name in rng.sample(others, min(per_fact, len(others))) if rng is not None else others[:per_fact]:
        for question, text in own:
            if subject not in text:
                continue
            text = text.replace(subject, name)
            start = text.index(name) + len(name)
            ends = [i + 1 for a in answers if (i := text.find(a, start)) >= 0]
            wording = text[start:min(ends, default=len(text))]
            if wording.strip():
                out.append((name, question.replace(subject, name), text[:start], wording))
    return list(dict.fromkeys(out))


def with_neighbours(facts: Sequence[Fact], names: Sequence[str], per_fact: int, seed: int = 0,
                    alike: Sequence[Sequence[str]] | None = None) -> list[Fact]:
    """The facts with their neighbours: names drawn at random from `names`, or with `alike` (per fact, the names
    ordered as `names_alike` orders them) the `per_fact` names most like each fact's subject."""
    if alike is not None:
        return [replace(f, neighbours=tuple(neighbour_examples(f, order, per_fact, None)))
                for f, order in zip(facts, alike, strict=True)]
    rng = random.Random(seed)
    return [replace(f, neighbours=tuple(neighbour_examples(f, names, per_fact, rng))) for f in facts]
