"""Where forgetting comes from (`smft bench forgetting`): every answer lost in a learn-forget run, taken apart.

Version 0's memory adds nothing (its value rows are zero), and training changes value rows only. So what a
trained model answers differently it answers because of rows taught facts wrote, and the ledger saved with
the run's table (`model/provenance.py`) names the facts. For each loss, at the first answer token where the
trained model parts from the answer it gave before (fed that answer up to there), this measures:

- which rows the position reads and with what weight, split among the facts that wrote them (as `explain`
  does), and the share from rows at the norm cap;
- whether the query moved: the slots read there before and after (with one memory layer the query depends
  only on the layers below it and on the token ids, so it cannot move; with several, the upper ones' can);
- causally, what brings the old token back: putting back version 0's rows of the fact with the largest share,
  of the three largest, of the rows at the cap; switching the memory off at the answer position alone, or at
  every earlier position alone (memory written into the context reaches the answer through attention).

Probe questions are taken apart against version 0's answer. A taught fact answered at an earlier checkpoint
and no longer at the end is taken apart against its own answer as its question is asked (the model is
fed the question and the answer the fact gives), asking which rows push the other token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from bench.facts import EvalFact
from bench.learn_forget import Checkpoint
from model.evaluation import contains_answer, generate_answer_ids
from model.lm import MemoryLM
from model.memory import at_cap
from model.probe import ProbeQuestion
from model.prompting import chat_prompt
from model.provenance import RowWriters, Source, contributions_of
from model.retrofit import decoder_layers

CAUSES = ("one fact", "up to three facts", "rows at the cap", "answer position", "earlier positions")


@dataclass(frozen=True)
class Loss:
    """One answer taken apart at the first token where the trained model parts from it."""

    question: str
    expected: str  # the answer given before (version 0's, or the taught fact's)
    now: str  # what the trained model answers
    position: int  # answer token where they part
    expected_token: str
    now_token: str
    memory_norm: float  # the memory's output norm at that position over the MLP output's beside it
    slots_kept: float  # Jaccard of the slots read there, before vs after (1: the query did not move)
    capped_share: float  # of the memory's contribution there, from rows at the norm cap
    sources: list[Source]  # the facts whose rows it read, largest share first
    brought_back: dict[str, bool] = field(default_factory=dict)  # CAUSES -> the old token is back when undone

    def as_dict(self) -> dict:
        return {**asdict(self), "sources": [asdict(s) for s in self.sources]}


@contextmanager
def rows_restored(lm: MemoryLM, base: Mapping[int, torch.Tensor], rows: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """While open, the given rows ({layer: slot ids}) hold version 0's values again."""
    saved = {}
    with torch.no_grad():
        for layer, slots in rows.items():
            if len(slots):
                values = lm.memories[layer].values
                saved[layer] = (slots, values[slots].clone())
                values[slots] = base[layer][slots].to(values.device, values.dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, (slots, before) in saved.items():
                lm.memories[layer].values[slots] = before


@contextmanager
def memory_off_at(lm: MemoryLM, positions: torch.Tensor) -> Iterator[None]:
    """While open, every memory adds nothing at the given positions of a one-row forward."""
    def hook(module, args, output):
        keep = torch.ones(output.shape[-2], 1, dtype=output.dtype, device=output.device)
        keep[positions] = 0
        return output * keep

    handles = [m.register_forward_hook(hook) for m in lm.memories.values()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _next_token(lm: MemoryLM, ids: torch.Tensor) -> int:
    return int(lm.logits(ids[None].to(lm.device))[0, -1].argmax())


@torch.no_grad()
def _reads_at_last(lm: MemoryLM, ids: torch.Tensor) -> tuple[dict[int, torch.Tensor], dict[int, set[int]], float]:
    """At the last position: each slot's contribution (weight x row norm), the slots read, and the largest ratio of
    a memory's output norm to the norm of the MLP output it is added to (model/retrofit.py)."""
    outputs: dict[str, list[torch.Tensor]] = {"memory": [], "mlp": []}
    layers = decoder_layers(lm.model)
    handles = [module.register_forward_hook(lambda mod, a, out, kind=kind: outputs[kind].append(out[0, -1]))
               for idx, memory in lm.memories.items()
               for kind, module in (("memory", memory), ("mlp", layers[idx].mlp.base_layer))]
    try:
        with lm.reads() as reads:
            lm.logits(ids[None].to(lm.device))
    finally:
        for h in handles:
            h.remove()
    slots = {idx: set(chunks[0][0][0, -1].flatten().tolist()) for idx, chunks in reads.items()}
    relative = max(float(m.norm() / p.norm()) for m, p in zip(outputs["memory"], outputs["mlp"], strict=True))
    return contributions_of(lm, reads), slots, relative


def rows_of(writers: RowWriters, fact_ids: Sequence[str]) -> dict[int, torch.Tensor]:
    rows: dict[int, list[torch.Tensor]] = {}
    for fact_id in fact_ids:
        for layer, slots in writers.rows_of(fact_id).items():
            rows.setdefault(layer, []).append(slots)
    return {layer: torch.cat(parts).unique() for layer, parts in rows.items()}


def _mask(rows: Mapping[int, torch.Tensor], layer: int, size: int) -> torch.Tensor:
    """[size] True at the layer's rows."""
    out = torch.zeros(size, dtype=torch.bool)
    out[rows.get(layer, torch.zeros(0, dtype=torch.long))] = True
    return out


def capped_rows(lm: MemoryLM, cap: float | None) -> dict[int, torch.Tensor]:
    if cap is None:
        return {}
    return {idx: at_cap(m.values.detach().float().norm(dim=-1), cap).nonzero().flatten().cpu()
            for idx, m in lm.memories.items()}


def table_by_norm(lm: MemoryLM, writers: RowWriters, cap: float | None) -> list[dict]:
    """The written rows by norm (up to half the cap, above it, at it), with how many live facts wrote them: rows
    at the cap can only turn, so a write there overwrites what its earlier writers put in."""
    bands: dict[str, list[torch.Tensor]] = {}
    for idx, memory in lm.memories.items():
        norm = memory.values.detach().float().norm(dim=-1).cpu()
        count = writers.writer_counts(idx, len(norm))
        written = (norm > 0) | (count > 0)
        full = at_cap(norm, cap) if cap is not None else torch.zeros_like(written)
        half = norm > cap / 2 if cap is not None else torch.zeros_like(written)
        for name, rows in (("up to half the cap", written & ~half), ("above half the cap", written & half & ~full),
                           ("at the cap", written & full)):
            bands.setdefault(name, []).append(count[rows])
    out = []
    for name, parts in bands.items():
        count = torch.cat(parts).double()
        out.append({"rows": name, "count": len(count),
                    **({"mean writers": float(count.mean()), "median writers": float(count.median()),
                        "one writer": float((count == 1).double().mean()),
                        "5+ writers": float((count >= 5).double().mean())} if len(count) else {})})
    return out


def changed_rows(lm: MemoryLM, base: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Per memory layer, the slots whose values differ from version 0's: restoring them restores version 0."""
    with torch.no_grad():
        return {idx: (m.values != base[idx].to(m.values.device, m.values.dtype)).any(1).nonzero().flatten()
                for idx, m in lm.memories.items()}


def take_apart(lm: MemoryLM, base: Mapping[int, torch.Tensor], writers: RowWriters, question: str,
               expected_ids: Sequence[int], now_ids: Sequence[int], capped: Mapping[int, torch.Tensor],
               changed: Mapping[int, torch.Tensor]) -> Loss | None:
    """One loss, or None where the trained model, fed the expected answer, never parts from it."""
    tok = lm.tokenizer
    prompt = torch.tensor(lm.encode(chat_prompt(tok, question)))
    expected = torch.tensor(list(expected_ids), dtype=torch.long)
    for position in range(len(expected)):
        ids = torch.cat([prompt, expected[:position]])
        now = _next_token(lm, ids)
        if now != int(expected[position]):
            break
    else:
        return None
    old = int(expected[position])
    contributions, slots_now, relative = _reads_at_last(lm, ids)
    with rows_restored(lm, base, changed):
        _, slots_before, _ = _reads_at_last(lm, ids)
    kept = min(len(slots_now[i] & slots_before[i]) / len(slots_now[i] | slots_before[i]) for i in slots_now)
    total = sum(float(c.sum()) for c in contributions.values())
    at_cap = sum(float(contributions[i][capped[i]].sum()) for i in contributions if i in capped)
    sources, _ = writers.attribute(contributions, top=3)

    def back() -> bool:
        return _next_token(lm, ids) == old

    brought_back = {}
    for cause, facts in (("one fact", sources[:1]), ("up to three facts", sources[:3])):
        with rows_restored(lm, base, rows_of(writers, [s.fact_id for s in facts])):
            brought_back[cause] = bool(facts) and back()
    with rows_restored(lm, base, capped):
        brought_back["rows at the cap"] = bool(at_cap) and back()
    last = len(ids) - 1
    with memory_off_at(lm, torch.tensor([last])):
        brought_back["answer position"] = back()
    with memory_off_at(lm, torch.arange(last)):
        brought_back["earlier positions"] = back()
    return Loss(question, tok.decode(expected_ids, skip_special_tokens=True).strip(),
                tok.decode(now_ids, skip_special_tokens=True).strip(), position, tok.decode([old]), tok.decode([now]),
                relative, kept, at_cap / total if total else 0.0, sources, brought_back)


@dataclass(frozen=True)
class TaughtLoss:
    """A taught fact answered at an earlier checkpoint and no longer at the end."""

    fact_id: str
    question: str
    answer: str
    now: str
    # of the memory's contribution where its answer is predicted (the prompt's last position), from rows:
    own: float  # it wrote and no later fact did
    shared_later: float  # it wrote and a later fact wrote too (retrained since)
    later_only: float  # only later facts wrote
    earlier_only: float  # only earlier facts wrote
    sources: list[Source]  # the facts whose rows it read there, largest share first
    back_without_later_rows: bool  # answered again once the rows only later facts wrote are version 0's
    back_without_other_rows: bool  # ... once every row it did not write is version 0's

    def as_dict(self) -> dict:
        return {**asdict(self), "sources": [asdict(s) for s in self.sources]}


def take_apart_taught(lm: MemoryLM, base: Mapping[int, torch.Tensor], writers: RowWriters, fact_id: str,
                      question: str, answer: str, order: Mapping[str, int], now: str,
                      max_new_tokens: int = 32) -> TaughtLoss:
    """Which rows push a taught fact's answer out; `order`: each fact's place in the stream."""
    prompt = torch.tensor(lm.encode(chat_prompt(lm.tokenizer, question)))
    contributions, _, _ = _reads_at_last(lm, prompt)
    mine, place = rows_of(writers, [fact_id]), order[fact_id]
    later = rows_of(writers, [f for f in writers.names if order.get(f, -1) > place])
    earlier = rows_of(writers, [f for f in writers.names if f != fact_id and order.get(f, place) < place])
    total = sum(float(c.sum()) for c in contributions.values()) or 1.0
    shares = dict.fromkeys(("own", "shared_later", "later_only", "earlier_only"), 0.0)
    later_only: dict[int, torch.Tensor] = {}  # rows to put back: only later facts wrote them
    not_mine: dict[int, torch.Tensor] = {}  # ... every row some other fact wrote and it did not
    for layer, c in contributions.items():
        is_mine, is_later, is_earlier = (_mask(rows, layer, len(c)) for rows in (mine, later, earlier))
        for name, rows in (("own", is_mine & ~is_later), ("shared_later", is_mine & is_later),
                           ("later_only", ~is_mine & is_later), ("earlier_only", ~is_mine & ~is_later & is_earlier)):
            shares[name] += float(c[rows].sum()) / total
        later_only[layer] = (is_later & ~is_mine).nonzero().flatten()
        not_mine[layer] = ((is_later | is_earlier) & ~is_mine).nonzero().flatten()
    sources, _ = writers.attribute(contributions, top=3)

    def answered() -> bool:
        reply = generate_answer_ids(lm, [question], max_new_tokens)[0]
        return contains_answer(lm.tokenizer.decode(reply, skip_special_tokens=True), answer)

    with rows_restored(lm, base, later_only):
        without_later = answered()
    with rows_restored(lm, base, not_mine):
        without_others = answered()
    return TaughtLoss(fact_id, question, answer, now, **shares, sources=sources,
                      back_without_later_rows=without_later, back_without_other_rows=without_others)


def summary(losses: Sequence[Loss]) -> dict[str, float]:
    """Shares of the losses that each undoing brings back, and the means of what was measured."""
    n = max(len(losses), 1)
    out = {f"brought back by {cause}": sum(loss.brought_back.get(cause, False) for loss in losses) / n
           for cause in CAUSES}
    out["by none of these"] = sum(not any(loss.brought_back.values()) for loss in losses) / n
    out["mean slots kept (query did not move = 1)"] = sum(loss.slots_kept for loss in losses) / n
    out["mean share from rows at the cap"] = sum(loss.capped_share for loss in losses) / n
    out["mean share of the largest fact"] = sum(loss.sources[0].share if loss.sources else 0.0 for loss in losses) / n
    out["mean memory output norm / MLP output norm"] = sum(loss.memory_norm for loss in losses) / n
    return out


def taught_summary(losses: Sequence[TaughtLoss]) -> dict[str, float]:
    n = max(len(losses), 1)
    out = {f"mean share from {name.replace('_', ' ')} rows": sum(getattr(loss, name) for loss in losses) / n
           for name in ("own", "shared_later", "later_only", "earlier_only")}
    out["answered again without the rows only later facts wrote"] = sum(
        loss.back_without_later_rows for loss in losses) / n
    out["answered again without every row it did not write"] = sum(
        loss.back_without_other_rows for loss in losses) / n
    return out


def lost_taught(checkpoints: Sequence[Checkpoint]) -> list[int]:
    """Taught facts answered at some checkpoint and not at the last (by their place in the stream)."""
    if not checkpoints or any(c.missed is None for c in checkpoints):
        return []
    final = set(checkpoints[-1].missed or ())
    once = {i for c in checkpoints[:-1] for i in range(c.facts_taught) if i not in set(c.missed or ())}
    return sorted(final & once)


def spread(items: Sequence[int], limit: int | None) -> list[int]:
    """At most `limit` of `items`, evenly spread over them (the first `limit` of a stream's losses would all be
    its earliest facts')."""
    if limit is None or len(items) <= limit:
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def analyse(lm: MemoryLM, base: Mapping[int, torch.Tensor], writers: RowWriters, checkpoints: Sequence[Checkpoint],
            facts: Sequence[EvalFact], probe: Sequence[ProbeQuestion], cap: float | None,
            limit: int | None = None) -> dict:
    """Every probe question version 0 answered and the trained model (`lm`) does not, and every taught fact lost
    on the way, taken apart (at most `limit` of each, spread over them)."""
    changed = changed_rows(lm, base)
    questions = [q.question for q in probe]
    with rows_restored(lm, base, changed):
        before = generate_answer_ids(lm, questions, 24)
    after = generate_answer_ids(lm, questions, 24)
    decode = lm.tokenizer.decode
    lost = [i for i, (q, b, a) in enumerate(zip(probe, before, after, strict=True))
            if q.correct(decode(b, skip_special_tokens=True)) and not q.correct(decode(a, skip_special_tokens=True))]
    answered_before = sum(q.correct(decode(b, skip_special_tokens=True)) for q, b in zip(probe, before, strict=True))
    chosen = spread(lost, limit)
    capped = capped_rows(lm, cap)
    probe_losses = [loss for i in chosen
                    if (loss := take_apart(lm, base, writers, questions[i], before[i], after[i], capped, changed))
                    is not None]
    taught = facts[:checkpoints[-1].facts_taught] if checkpoints else []
    order = {f.fact.fact_id: i for i, f in enumerate(taught)}
    gone = lost_taught(checkpoints)
    chosen_taught = spread(gone, limit)
    replies = generate_answer_ids(lm, [taught[i].question for i in chosen_taught], 32)
    taught_losses = [take_apart_taught(lm, base, writers, taught[i].fact.fact_id, taught[i].question, taught[i].answer,
                                       order, decode(reply, skip_special_tokens=True).strip())
                     for i, reply in zip(chosen_taught, replies, strict=True)]
    missed = set(checkpoints[-1].missed or ()) if checkpoints else set()
    by_kind: dict[str, list[int]] = {}
    for i, fact in enumerate(taught):
        counts = by_kind.setdefault(fact.kind, [0, 0])
        counts[0] += i not in missed
        counts[1] += 1
    return {"facts_taught": len(taught), "answered_by_relation": by_kind, "table": table_by_norm(lm, writers, cap),
            "probe": {"answered_by_version_0": answered_before, "lost": len(lost), "taken_apart": len(probe_losses),
                      "summary": summary(probe_losses), "losses": [loss.as_dict() for loss in probe_losses]},
            "taught": {"lost_on_the_way": len(gone), "taken_apart": len(taught_losses),
                       "summary": taught_summary(taught_losses), "losses": [loss.as_dict() for loss in taught_losses]}}
