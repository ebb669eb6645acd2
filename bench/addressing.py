"""What the memory keys on where a fact's answer is predicted: the entity, or the sentence around it?

A fact can only be stored apart from others of its kind if, at the position that predicts its
answer, the slots read depend on the fact (its subject) more than on the phrasing. This measures
both, with Jaccard overlaps of the slots read there (all heads and top-k):
- same fact, two phrasings: the question's answer as the model writes it vs a plain paraphrase;
  high means a fact taught in one form is found from the other.
- same phrasing, another fact of the same relation ("The capital of X is" for two X); high
  means new facts of a kind overwrite each other and what the model knew of that kind.
- another relation: the floor.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench.facts import EvalFact
from model.batching import pad_rows
from model.lm import MemoryLM
from model.prompting import chat_prompt


@dataclass(frozen=True)
class AnswerOverlap:
    same_fact: float  # mean Jaccard: one fact, two phrasings
    same_phrasing: float  # mean Jaccard: two facts of one relation, one phrasing
    other_relation: float  # mean Jaccard: facts of different relations
    facts: int

    def as_row(self) -> str:
        return f"{self.same_fact:.3f} | {self.same_phrasing:.3f} | {self.other_relation:.3f}"


def answer_contexts(fact: EvalFact, tokenizer) -> tuple[str, str] | None:
    """(the chat answer up to the answer, a plain paraphrase up to the answer), or None without both."""
    before = [s.split(fact.answer)[0].rstrip() for s in fact.fact.statements if fact.answer in s]
    before = [b for b in before if b]  # statements that open with the answer have no context before it
    if len(before) < 2:
        return None
    return chat_prompt(tokenizer, fact.question) + before[0], before[1]


@torch.no_grad()
def last_position_slots(lm: MemoryLM, texts: Sequence[str], batch_size: int = 16) -> dict[int, list[set[int]]]:
    """Per memory layer, the set of slots each text's last token reads."""
    out: dict[int, list[set[int]]] = {i: [] for i in lm.memories}
    for start in range(0, len(texts), batch_size):
        rows = [lm.encode(t) for t in texts[start:start + batch_size]]
        ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
        with lm.recording() as records:
            lm.run_to_memories(ids.to(lm.device), mask.to(lm.device))
        last = torch.tensor([len(r) - 1 for r in rows])
        for layer, chunks in records.items():
            slots = chunks[0][torch.arange(len(rows)), last].flatten(1).cpu()  # [B, heads * k]
            out[layer] += [set(row.tolist()) for row in slots]
    return out


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def answer_overlap(lm: MemoryLM, facts: Sequence[EvalFact]) -> dict[int, AnswerOverlap]:
    """Per memory layer, the three overlaps over the facts that have two phrasings with context."""
    usable = [(f, c) for f in facts if (c := answer_contexts(f, lm.tokenizer)) is not None]
    if len(usable) < 2:
        raise ValueError("need at least two facts with two phrasings that do not open with the answer")
    kinds = [f.kind for f, _ in usable]
    chat = last_position_slots(lm, [c[0] for _, c in usable])
    plain = last_position_slots(lm, [c[1] for _, c in usable])
    report = {}
    for layer in lm.memories:
        a, b = chat[layer], plain[layer]
        same_kind, other = [], []
        for i, j in itertools.combinations(range(len(usable)), 2):
            (same_kind if kinds[i] == kinds[j] else other).append(_jaccard(a[i], a[j]))
        report[layer] = AnswerOverlap(_mean([_jaccard(x, y) for x, y in zip(a, b, strict=True)]),
                                      _mean(same_kind), _mean(other), len(usable))
    return report
