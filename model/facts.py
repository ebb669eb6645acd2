"""From facts to training batches, in the prompt format that answering uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.batching import pad_rows
from model.errors import FactError
from model.prompting import chat_prompt, end_of_answer

MIN_TARGET_TOKENS = 2


@dataclass(frozen=True)
class Fact:
    text: str  # the statement
    paraphrases: tuple[str, ...] = ()
    question: str | None = None
    answer: str | None = None
    fact_id: str = ""
    # (question, statement) pairs the model wrote itself from the statements; see questions.py
    synthetic_questions: tuple[tuple[str, str], ...] = ()
    # (name, question or '', prefix, wording): its own examples about other subjects (the name swapped in), whose
    # wording steers which rows it may change; never trained on. See neighbours.py
    neighbours: tuple[tuple[str, str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.text or not self.text.strip():
            raise FactError("text must not be empty")
        if (self.question is None) != (self.answer is None):
            raise FactError("question and answer must be given together")
        object.__setattr__(self, "paraphrases", tuple(self.paraphrases))

    @property
    def statements(self) -> tuple[str, ...]:
        return (self.text.strip(), *(p.strip() for p in self.paraphrases if p.strip()))


@dataclass
class TrainingBatch:
    input_ids: torch.Tensor  # [B, T], right-padded
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], -100 where no loss (prompt, padding)
    fact_ids: tuple[str, ...] = ()
    row_facts: tuple[int, ...] = ()  # per row, the index in fact_ids of the fact it teaches
    neighbours: TrainingBatch | None = None  # the facts' neighbour examples: read, never trained on

    def to(self, device: torch.device | str) -> TrainingBatch:
        return TrainingBatch(self.input_ids.to(device), self.attention_mask.to(device),
                             self.labels.to(device), self.fact_ids, self.row_facts,
                             self.neighbours.to(device) if self.neighbours is not None else None)

    @property
    def label_count(self) -> int:
        """Tokens the loss covers (a label with a position before it to predict it)."""
        return int((self.labels[:, 1:] != -100).sum())

    def by_length(self, waste: float = 0.2) -> list[TrainingBatch]:
        """The rows in groups of similar length, each trimmed to its own longest row.

        A forward costs what its padded tokens cost, and a batch mixing plain statements (about 15
        tokens) with chat examples (about 60) is more than half padding. Rows are right-padded, so
        trimming changes nothing they compute; each group keeps its rows' facts. A group grows while
        its padding stays within `waste` of its real tokens. The mean loss over the batch is the
        groups' losses weighted by their `label_count`.
        """
        lengths = self.attention_mask.sum(1).tolist()
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        real = 0
        for i in order:
            if groups and (len(groups[-1]) + 1) * lengths[i] <= (1 + waste) * (real + lengths[i]):
                groups[-1].append(i)
                real += lengths[i]
            else:
                groups.append([i])
                real = lengths[i]
        out = []
        for rows in groups:
            index, width = torch.tensor(rows, device=self.input_ids.device), max(lengths[i] for i in rows)
            out.append(TrainingBatch(self.input_ids[index, :width], self.attention_mask[index, :width],
                                     self.labels[index, :width], self.fact_ids,
                                     tuple(self.row_facts[i] for i in rows) if self.row_facts else ()))
        return out

    @property
    def loss_positions(self) -> torch.Tensor:
        """[B, T] bool: positions whose output predicts a labelled token (what a memory read there affects)."""
        pos = torch.zeros_like(self.labels, dtype=torch.bool)
        pos[:, :-1] = self.labels[:, 1:] != -100
        return pos


def fact_examples(fact: Fact, tokenizer) -> list[tuple[str, str]]:
    """(prompt, target) pairs; the loss covers the target only.

    Each statement is taught as plain text; with a question (given, or written by the model,
    see questions.py), also as the reply to it in the exact chat form a query uses, and so is a
    given short answer. There is no generic chat prompt for bare statements: every fact would
    then compete for the slots that prompt reads (measured: the last fact taught leaked into
    the answers to the others).
    """
    eos = end_of_answer(tokenizer)
    examples: list[tuple[str, str]] = []
    for statement in fact.statements:
        examples.append(("", statement))
        if fact.question:
            examples.append((chat_prompt(tokenizer, fact.question), statement + eos))
    for question, statement in fact.synthetic_questions:
        examples.append((chat_prompt(tokenizer, question), statement + eos))
    if fact.question and fact.answer:
        examples.append((chat_prompt(tokenizer, fact.question), fact.answer.strip() + eos))
    return examples


def check_fact(fact: Fact, tokenizer, max_tokens: int = 256) -> None:
    """Raise FactError when the fact cannot become a useful training example."""
    for statement in fact.statements:
        n = len(tokenizer(statement, add_special_tokens=False)["input_ids"])
        if n < MIN_TARGET_TOKENS:
            raise FactError(f"statement {statement[:40]!r} has {n} token(s); at least {MIN_TARGET_TOKENS} needed")
        if n > max_tokens:
            raise FactError(f"statement has {n} tokens; at most {max_tokens} allowed")


def build_batch(facts: Sequence[Fact], tokenizer, max_tokens: int = 384) -> TrainingBatch:
    """One right-padded batch holding every example of every fact (and its neighbours, apart)."""
    for fact in facts:
        check_fact(fact, tokenizer)
    examples = [(prompt, target, index) for index, fact in enumerate(facts)
                for prompt, target in fact_examples(fact, tokenizer)]
    if not examples:
        raise FactError("no facts to build a batch from")
    input_ids, attention, labels = _rows(examples, tokenizer, max_tokens)
    # A neighbour row's "fact" is its (fact, name): what SparseMemoryLearner counts rows by.
    groups: dict[tuple[int, str], int] = {}
    neighbours = [((chat_prompt(tokenizer, q) if q else "") + prefix, wording,
                   groups.setdefault((index, name), len(groups)))
                  for index, fact in enumerate(facts) for name, q, prefix, wording in fact.neighbours]
    return TrainingBatch(input_ids, attention, labels, tuple(f.fact_id for f in facts),
                         tuple(index for _, _, index in examples),
                         TrainingBatch(*_rows(neighbours, tokenizer, max_tokens), row_facts=tuple(
                             group for _, _, group in neighbours)) if neighbours else None)


def _rows(examples: Sequence[tuple[str, str, int]], tokenizer, max_tokens: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels) of (prompt, target, _) examples: the loss covers the target only."""
    rows: list[tuple[list[int], list[int]]] = []
    for prompt, target, _ in examples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        ids = (p + t)[:max_tokens]
        labels = ([-100] * len(p) + t)[:max_tokens]
        if not prompt:
            labels[0] = -100  # nothing predicts the first token of plain text
        rows.append((ids, labels))
    input_ids, attention = pad_rows([ids for ids, _ in rows], tokenizer.pad_token_id)
    labels, _ = pad_rows([lab for _, lab in rows], -100)
    return input_ids, attention, labels
