"""Where an answer came from: which taught facts wrote the memory rows it read.

Sparse memory finetuning changes only the rows a fact's own tokens read, so the table keeps an exact
ledger: for every live fact, the (layer, slot) rows its training wrote. `RowWriters` holds it; every
delta updates it (a fact taught again replaces its rows, a fact taken back loses them), snapshots
save it, so every replica holds the same ledger as the worker.

An answer's memory reads are then attributed: each read contributes its softmax weight times the
norm of the row it read (the size of what it added to the residual stream; a row never taught adds
nothing). A row written by several live facts splits its contribution between them equally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from model.contrast import Contrast
from model.evaluation import generate_answer_ids
from model.lm import MemoryLM

Writes = Mapping[str, Mapping[int, torch.Tensor]]  # fact id -> layer -> slot ids


def _keys(layer: int, slots: torch.Tensor) -> torch.Tensor:
    """One int64 per (layer, slot): layer in the high 32 bits."""
    return (layer << 32) | slots.to(torch.int64)


@dataclass(frozen=True)
class Source:
    fact_id: str
    share: float  # of the memory's contribution to the answer
    rows_read: int  # distinct rows of this fact the answer read


class RowWriters:
    """The ledger of which live fact wrote which memory row.

    One writer (the replica applying a delta, under its lock) and any number of readers (status and
    explain requests, without the lock): an update swaps the entries in one assignment and names only
    grow, so a reader that took `entries` once sees one consistent ledger.
    """

    def __init__(self) -> None:
        self.names: list[str] = []  # fact ids; an entry's fact is an index into it
        self._index: dict[str, int] = {}
        # ((layer << 32) | slot, fact index): one pair per (fact, row) it wrote
        self.entries = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int32))

    def __len__(self) -> int:
        return len(self.entries[0])

    def _intern(self, fact_id: str) -> int:
        if fact_id not in self._index:
            self._index[fact_id] = len(self.names)
            self.names.append(fact_id)
        return self._index[fact_id]

    def update(self, writes: Writes, removed: Iterable[str] = ()) -> None:
        """Facts in `writes` now own exactly the rows given (taught, or taught again after a revert);
        facts in `removed` own none (taken back)."""
        keys, facts = self.entries
        gone = [self._index[f] for f in {*writes, *removed} if f in self._index]
        if gone:
            keep = ~torch.isin(facts, torch.tensor(gone, dtype=torch.int32))
            keys, facts = keys[keep], facts[keep]
        new_keys, new_facts = [keys], [facts]
        for fact_id, layers in writes.items():
            index = self._intern(fact_id)
            for layer, slots in layers.items():
                if len(slots):
                    new_keys.append(_keys(layer, slots.cpu()))
                    new_facts.append(torch.full((len(slots),), index, dtype=torch.int32))
        self.entries = (torch.cat(new_keys), torch.cat(new_facts))

    def live(self) -> list[str]:
        """The facts that own at least one row."""
        _, facts = self.entries
        return [self.names[i] for i in torch.unique(facts).tolist()]

    def rows_of(self, fact_id: str) -> dict[int, torch.Tensor]:
        """The rows `fact_id` wrote, per layer (empty when it owns none)."""
        if fact_id not in self._index:
            return {}
        keys, facts = self.entries
        keys = keys[facts == self._index[fact_id]]
        layers = keys >> 32
        return {int(layer): keys[layers == layer] & 0xFFFFFFFF for layer in layers.unique()}

    def writer_counts(self, layer: int, num_slots: int) -> torch.Tensor:
        """How many live facts wrote each row of `layer` ([num_slots], int64)."""
        keys, _ = self.entries
        mine = keys[(keys >> 32) == layer] & 0xFFFFFFFF
        return torch.bincount(mine, minlength=num_slots)

    def sharing(self, fact_id: str) -> dict[str, int]:
        """Other live facts that wrote some of `fact_id`'s rows, and how many, most first."""
        if fact_id not in self._index:
            return {}
        index = self._index[fact_id]
        keys, facts = self.entries
        mine = keys[facts == index]
        others = torch.isin(keys, mine) & (facts != index)
        counts = torch.bincount(facts[others].to(torch.int64), minlength=len(self.names))
        order = counts.argsort(descending=True, stable=True)
        return {self.names[i]: int(counts[i]) for i in order.tolist() if counts[i] > 0}

    def attribute(self, contributions: Mapping[int, torch.Tensor], top: int = 5) -> tuple[list[Source], float]:
        """Split per-slot contributions ({layer: [num_slots]}) among the facts that wrote those rows.

        Returns the `top` facts by share, and the share no live fact accounts for (rows whose writer
        was taken back leave residue only where a later version also changed them).
        """
        total = float(sum(float(c.sum()) for c in contributions.values()))
        keys, facts = self.entries
        if total <= 0 or not len(keys):
            return [], 0.0 if total <= 0 else 1.0
        layers, slots = keys >> 32, keys & 0xFFFFFFFF
        per_entry = torch.zeros(len(keys), dtype=torch.float64)
        for layer, c in contributions.items():
            at = layers == layer
            per_entry[at] = c.double().cpu()[slots[at]]
        _, inverse, writers = torch.unique(keys, return_inverse=True, return_counts=True)
        per_entry = per_entry / writers[inverse]
        facts = facts.to(torch.int64)
        names = self.names[:int(facts.max()) + 1]  # taken after the entries: every index is in it
        shares = torch.bincount(facts, weights=per_entry, minlength=len(names)) / total
        rows_read = torch.bincount(facts, weights=(per_entry > 0).double(), minlength=len(names))
        order = shares.argsort(descending=True, stable=True)[:top]
        sources = [Source(names[i], float(shares[i]), int(rows_read[i])) for i in order.tolist() if shares[i] > 0]
        return sources, max(0.0, 1.0 - float(shares.sum()))

    # --- persistence (inside a snapshot) -------------------------------------------------------
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Tensors and the fact ids they index, with facts that own no row left out."""
        keys, facts = self.entries
        live, facts = torch.unique(facts, return_inverse=True)
        names = [self.names[i] for i in live.tolist()]
        return {"keys": keys.contiguous(), "facts": facts.to(torch.int32).contiguous()}, names

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], names: list[str]) -> RowWriters:
        ledger = cls()
        ledger.names = list(names)
        ledger._index = {name: i for i, name in enumerate(ledger.names)}
        ledger.entries = (tensors["keys"].to(torch.int64), tensors["facts"].to(torch.int32))
        return ledger


@torch.no_grad()
def answer_contributions(lm: MemoryLM, question: str, max_new_tokens: int, prompt: str | None = None,
                         unnoted: str | None = None, contrast: Contrast | None = None
                         ) -> tuple[str, dict[int, torch.Tensor]]:
    """The greedy answer to `question` (as `POST /v1/query` gives it), and what each slot contributed to it.
    `prompt`: the whole text before the answer, where it is not the question alone (notes before it);
    `unnoted` and `contrast`: decoded against the prompt without its notes, as the query is (model/contrast.py)."""
    with lm.reads() as reads:
        answer_ids = generate_answer_ids(lm, [question], max_new_tokens, (lambda _: prompt) if prompt else None,
                                         unnoted=[unnoted], contrast=contrast)[0]
    return lm.tokenizer.decode(answer_ids, skip_special_tokens=True).strip(), contributions_of(lm, reads)


@torch.no_grad()
def contributions_of(lm: MemoryLM, reads: Mapping[int, list[tuple[torch.Tensor, torch.Tensor]]]
                     ) -> dict[int, torch.Tensor]:
    """From the reads `lm.reads()` recorded while one answer was generated with the KV cache: per memory
    layer, the sum over the positions that produced answer tokens of read weight x row norm ([num_slots]).
    The first forward covers the prompt (its last position gives the first answer token); each later
    forward is one position, giving the next token. The answer is the batch's first row (a second is its
    prompt without notes, model/contrast.py, whose reads are not the answer's)."""
    contributions = {}
    for idx, chunks in reads.items():
        slots = torch.cat([s[:1, -1] for s, _ in chunks]).flatten()
        weights = torch.cat([w[:1, -1] for _, w in chunks]).flatten()
        amount = weights * lm.memories[idx].values.detach()[slots].float().norm(dim=-1)
        contributions[idx] = torch.bincount(slots.cpu(), weights=amount.double().cpu(),
                                            minlength=lm.memories[idx].num_slots)
    return contributions
