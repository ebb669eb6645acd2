"""Answers that trust their notes: context-aware decoding (Shi et al., 2024, "Trusting Your Evidence:
Hallucinate Less with Context-aware Decoding", arXiv 2305.14739), against the model as it was.

A 135M model given a note often answers from what it believed before: "Quentaro is the official
language of the island of Vessa." in its prompt, it still says Spanish (session 35 found the memory is
not the cause: muted, the reply is the same). Context-aware decoding asks the model twice at every token
and takes (1 + alpha) * log p(token | the answer's prompt) - alpha * log p(token | what it believed):
what the evidence adds is amplified, what the model would say anyway is not. Here "what it believed" is
version 0 (the memory read muted) given the prompt without the notes, so both kinds of evidence count,
the notes and the taught memory. A plausibility floor (tokens at least `plausible` times as likely as
the best one given the evidence, as in contrastive decoding, Li et al., 2023) keeps the difference from
promoting a token neither wants.

Three refinements, each from a miss on `smft bench usage` (session 36, docs/usage.md):
- alpha is scaled at each token by how far the two rows disagree (AdaCAD, Wang et al., 2025: their
  Jensen-Shannon divergence, 0 to 1 bit): where the evidence says what version 0 says anyway nothing is
  amplified. At a fixed alpha a paragraph's note of four facts was answered from the wrong sentence.
- only a new word is chosen by the contrast; the rest of a word keeps its score with the notes.
  Amplified, a name version 0 cannot write came out doubled ("Gordaxmormor", "Mikuququ").
- the end of answer keeps its score with the notes: version 0 seldom ends an answer before its first
  word, so amplified it ended one there ("Which city is the capital of Luvoista?" -> "").

Both prompts run as rows of one batch: the row without notes is a partner that is fed the token its
row chose, so the two stay the same continuation. A row with no partner (no note was found) is
decoded as it would be alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper


@dataclass(frozen=True)
class Contrast:
    alpha: float = 1.0  # how much of what the evidence adds is added again, at most (0: plain decoding)
    plausible: float = 0.1  # a token is a candidate only at this share of the best one's probability with the notes
    adaptive: bool = True  # alpha scaled at each token by how far the two rows disagree (AdaCAD; see ContrastProcessor)

    def __post_init__(self) -> None:
        if self.alpha < 0 or not 0 < self.plausible <= 1:
            raise ValueError(f"contrast alpha must be >= 0 and plausible in (0, 1], got {self.alpha}, "
                             f"{self.plausible}")


def paired_batch(prompts: Sequence[str], partners: Sequence[str | None]) -> tuple[list[str], list[int], list[int]]:
    """The batch to decode: `prompts`, then each prompt's partner (its text without notes) where it has one;
    and the rows that have a partner with the partners' rows."""
    rows = [i for i, p in enumerate(partners) if p is not None]
    return [*prompts, *(partners[i] for i in rows)], rows, list(range(len(prompts), len(prompts) + len(rows)))


@dataclass(frozen=True)
class Vocabulary:
    """What the contrast needs to know of a tokenizer's tokens."""
    ends: tuple[int, ...]  # the end of answer
    glued: torch.Tensor  # [vocab] bool: a token that starts with a letter or digit (no space before it)
    open: torch.Tensor  # [vocab] bool: a token that ends with a letter or digit


@functools.cache
def vocabulary(tokenizer) -> Vocabulary:
    """The tokenizer's tokens as the contrast reads them (cached: SmolLM2's 49,152 take 0.1 s)."""
    pieces = [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(range(len(tokenizer)))]
    special = set(tokenizer.all_special_ids)
    glued = [i not in special and p[:1].isalnum() for i, p in enumerate(pieces)]
    open_ = [i not in special and p[-1:].isalnum() for i, p in enumerate(pieces)]
    return Vocabulary((tokenizer.eos_token_id,), torch.tensor(glued), torch.tensor(open_))


class ContrastProcessor(LogitsProcessor):
    """Scores each paired row by context-aware decoding and makes its partner follow the token it picks.

    `vocabulary` (`vocabulary(tokenizer)`) says which tokens go on with a word and which ends an answer, the
    ones left to the notes; without one every token is amplified. With `temperature` > 0 it samples itself
    (temperature, then top-p) and hands generate a single candidate per row, so a row and its partner take
    the same sampled token: run generate greedy.
    """

    def __init__(self, rows: Sequence[int], partners: Sequence[int], contrast: Contrast,
                 vocabulary: Vocabulary | None = None, temperature: float = 0.0, top_p: float = 1.0) -> None:
        self.rows, self.partners, self.contrast, self.vocabulary = list(rows), list(partners), contrast, vocabulary
        self._on: tuple[torch.Tensor, torch.Tensor] | None = None  # the vocabulary's masks on the scores' device
        self.warpers = ([TemperatureLogitsWarper(temperature), *([TopPLogitsWarper(top_p)] if top_p < 1 else [])]
                        if temperature > 0 else [])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float().clone()
        if self.rows:
            noted = torch.log_softmax(scores[self.rows], dim=-1)
            plain = torch.log_softmax(scores[self.partners], dim=-1)
            alpha = self.contrast.alpha * (_disagreement(noted, plain) if self.contrast.adaptive else 1.0)
            mixed = torch.where(self._kept(input_ids[self.rows, -1], scores.shape[-1]), noted,
                                (1 + alpha) * noted - alpha * plain)
            floor = noted.max(dim=-1, keepdim=True).values + math.log(self.contrast.plausible)
            scores[self.rows] = mixed.masked_fill(noted < floor, -math.inf)
        if self.warpers:
            for warp in self.warpers:
                scores = warp(input_ids, scores)
            picked = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        else:
            picked = scores.argmax(dim=-1)
        picked[self.partners] = picked[self.rows]
        if self.warpers:  # every row: only its sampled token is left for generate's greedy pick
            return _only(scores, picked, range(scores.shape[0]))
        return _only(scores, picked, self.partners)

    def _kept(self, last: torch.Tensor, size: int) -> torch.Tensor:
        """[rows, size] bool: the tokens each row scores with the notes alone, given the token it wrote last."""
        kept = torch.zeros(len(last), size, dtype=torch.bool, device=last.device)
        if self.vocabulary is not None:
            open_, glued = self._masks(last.device)
            n = min(size, len(glued))
            inside = open_[last.clamp(max=len(open_) - 1)] & (last < len(open_))
            kept[:, :n] = inside[:, None] & glued[None, :n]
            kept[:, list(self.vocabulary.ends)] = True
        return kept

    def _masks(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocabulary's two masks on the scores' device, moved there once per generation, not at every token."""
        if self._on is None or self._on[0].device != device:
            assert self.vocabulary is not None
            self._on = (self.vocabulary.open.to(device), self.vocabulary.glued.to(device))
        return self._on


def _only(scores: torch.Tensor, picked: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """`scores` with the given rows left a single candidate, their `picked` token."""
    rows = list(rows)
    if rows:
        scores[rows] = -math.inf
        scores[rows, picked[rows]] = 0.0
    return scores


def _disagreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the Jensen-Shannon divergence in bits (0: the same distribution, 1: disjoint) of two rows of
    log-probabilities, as a [rows, 1] column: AdaCAD's weight (Wang et al., 2025, arXiv 2409.07394)."""
    mean = torch.logsumexp(torch.stack([a, b]), dim=0) - math.log(2)

    def kl(p: torch.Tensor) -> torch.Tensor:
        return (p.exp() * (p - mean)).nan_to_num().sum(-1, keepdim=True)  # nan_to_num: 0 log 0 = 0

    return ((kl(a) + kl(b)) / (2 * math.log(2))).clamp(0, 1)
