"""Learners behind one interface: sparse memory finetuning and the two baselines.

`step(batch)` takes one optimisation step and reports it; `finish()` ends the current batch.
`teach()` runs a StepSchedule, so the worker and the benchmark drive all three the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from model.config import SparseConfig, StepSchedule
from model.facts import TrainingBatch
from model.lm import MemoryLM
from model.locality import OtherReads, change_penalty
from model.memory import at_cap
from model.ranking import rank_slots, slot_reads
from model.statistics import SlotStats


@dataclass(frozen=True)
class StepReport:
    loss: float  # batch loss before this step's update
    seconds: float
    rows_updated: int  # value rows (sparse) or parameters (baselines) this step may change


@dataclass(frozen=True)
class TeachReport:
    steps: int
    first_loss: float
    last_loss: float
    seconds: float


class Learner(Protocol):
    name: str

    def step(self, batch: TrainingBatch) -> StepReport: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


def lm_loss(lm: MemoryLM, batch: TrainingBatch) -> torch.Tensor:
    out = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   labels=batch.labels, use_cache=False)
    return out.loss


def grouped_loss(groups: list[TrainingBatch], loss_of: Callable[[int, TrainingBatch], torch.Tensor]) -> torch.Tensor:
    """The mean loss over every labelled token of the groups (`TrainingBatch.by_length`), from each group's mean."""
    total = sum(g.label_count for g in groups)
    return sum(loss_of(i, g) * (g.label_count / total) for i, g in enumerate(groups) if g.label_count)


def teach(learner: Learner, batch: TrainingBatch, schedule: StepSchedule) -> TeachReport:
    start = time.perf_counter()
    losses: list[float] = []
    try:
        for _ in range(schedule.limit):
            losses.append(learner.step(batch).loss)
            if schedule.loss_threshold is not None and losses[-1] < schedule.loss_threshold:
                break
    except BaseException:
        learner.abort()  # a failed batch leaves the model as it was
        raise
    learner.finish()
    return TeachReport(len(losses), losses[0], losses[-1], time.perf_counter() - start)


def fact_writes(read: torch.Tensor, positions: torch.Tensor, batch: TrainingBatch,
                selected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per fact of the batch, the selected slots its examples read where the loss is ([B, T, heads, k] reads)."""
    if not batch.row_facts:
        return {}
    owner = torch.tensor(batch.row_facts, device=read.device)
    selected = selected.to(read.device)
    out: dict[str, torch.Tensor] = {}
    for index, fact_id in enumerate(batch.fact_ids):
        mine = owner == index
        slots = read[mine][positions[mine]].flatten().unique()
        slots = slots[torch.isin(slots, selected)].cpu()
        out[fact_id] = torch.unique(torch.cat([out[fact_id], slots])) if fact_id in out else slots
    return out


class SparseMemoryLearner:
    """Updates only the top-t value rows that the batch reads far more than background text does.

    For each batch the selected rows become a small trainable tensor added to the frozen table
    (see ProductKeyMemory.attach_trainable_rows); `finish()` writes them back. Nothing else in the
    model requires a gradient, so backward stops at the lowest memory layer.
    """

    name = "sparse"

    def __init__(self, lm: MemoryLM, stats: SlotStats, config: SparseConfig, others: OtherReads | None = None) -> None:
        self.lm, self.stats, self.config = lm, stats, config
        # Other text's reads, for the locality penalty (config.keep_weight; model/locality.py); set by the caller.
        self.others = others
        # ... the positions that read this batch's rows: of that text, and of the batch's neighbours
        self._kept: list[OtherReads] = []
        self._neighbours_read: OtherReads | None = None  # the neighbours' reads where their answers begin
        self._batch: TrainingBatch | None = None
        self._slots: dict[int, torch.Tensor] = {}
        self._rows: dict[int, torch.nn.Parameter] = {}
        self._base: dict[int, torch.Tensor] = {}  # the selected rows of the table, read once per batch for the cap
        self._optimizer: torch.optim.Optimizer | None = None
        self._groups: list[TrainingBatch] = []  # the batch's rows by length (TrainingBatch.by_length)
        self._hidden: list[torch.Tensor] | None = None  # per group, its input to the lowest memory layer's block
        self._fast: bool | None = None  # decided once per learner: is the fast loss (see _loss) exact here?
        # Rows changed since take_touched(), with their values before the first change: an undo record.
        self.touched: dict[int, dict[int, torch.Tensor]] = {i: {} for i in lm.memories}
        # Rows each fact's examples read among those trained since take_writes(): fact id -> layer -> slot ids.
        # A row's gradient comes only from the tokens that read it, so these are the rows each fact wrote.
        self.writes: dict[str, dict[int, torch.Tensor]] = {}
        self._batch_writes: dict[str, dict[int, torch.Tensor]] = {}

    @torch.no_grad()
    def select(self, batch: TrainingBatch) -> dict[int, torch.Tensor]:
        """Slot ids per memory layer for this batch, counting reads where they affect the loss."""
        self._groups, self._hidden = batch.by_length(), []
        reads: dict[int, torch.Tensor] = {}
        # per group: (its slots read per layer, the positions that count, its rows)
        writes: list[tuple[dict[int, list[torch.Tensor]], torch.Tensor, TrainingBatch]] = []
        for group in self._groups:
            with self.lm.recording() as records:
                self._hidden.append(self.lm.run_to_memories(group.input_ids, group.attention_mask))
            positions = group.loss_positions
            for idx, chunks in records.items():
                counts = slot_reads(chunks[0][positions], self.lm.memories[idx].num_slots)
                reads[idx] = reads[idx] + counts if idx in reads else counts
            writes.append((records, positions, group))
        neighbour_reads, answer_reads = self._neighbour_reads(batch.neighbours)
        top_t = self.config.top_t * (max(1, len(batch.fact_ids)) if self.config.top_t_per_fact else 1)
        selected = {}
        self._batch_writes = {}
        for idx, counts in reads.items():
            weight = self._slot_weight(idx)
            if idx in neighbour_reads:  # a row the facts' neighbours read often is their wording's: never selected
                mine = neighbour_reads[idx] < self.config.neighbour_reads
                if self.config.answer_reads:  # ... and one they read where their answers begin, the answer's
                    mine &= answer_reads[idx] < self.config.answer_reads
                weight = mine.float() if weight is None else weight * mine.float()
            selected[idx] = rank_slots(counts, self.stats.idf(idx), top_t, self.config.ranking, weight)
            for records, positions, group in writes:
                for fact_id, slots in fact_writes(records[idx][0], positions, group, selected[idx]).items():
                    layers = self._batch_writes.setdefault(fact_id, {})
                    layers[idx] = torch.unique(torch.cat([layers[idx], slots])) if idx in layers else slots
        return selected

    def _neighbour_reads(self, neighbours: TrainingBatch | None
                         ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """Per memory layer, how many of the neighbours' names read each slot where their loss would be (a
        neighbour row's `row_facts` entry is its name's group, see build_batch), and how many read it at their
        last such position, where their answer begins. Their reads, with their weights, are kept for the locality
        penalty when it is on: other subjects' answers are what the fact must not write."""
        keep = self.config.keep_weight > 0
        keys: dict[int, list[torch.Tensor]] = {}
        answer_keys: dict[int, list[torch.Tensor]] = {}
        slots: dict[int, list[torch.Tensor]] = {}
        weights: dict[int, list[torch.Tensor]] = {}
        for group in neighbours.by_length() if neighbours is not None else []:
            with self.lm.reads() as records:
                self.lm.run_to_memories(group.input_ids, group.attention_mask)
            positions = group.loss_positions
            last = positions.clone()  # labels are one run at the end of each row: its last position is where
            last[:, :-1] &= ~positions[:, 1:]  # no labelled token follows
            at_answer = last[positions].cpu()  # which of the loss positions are answer starts
            names = torch.tensor(group.row_facts)[:, None].expand_as(positions)[positions.cpu()]
            for idx, chunks in records.items():
                read = chunks[0][0][positions].cpu()  # [positions, heads, k]
                if keep:
                    slots.setdefault(idx, []).append(read)
                    weights.setdefault(idx, []).append(chunks[0][1][positions].cpu())
                key = names[:, None] * self.lm.memories[idx].num_slots + read.flatten(1)  # (name, slot) per read
                keys.setdefault(idx, []).append(key.flatten())
                answer_keys.setdefault(idx, []).append(key[at_answer].flatten())
        self._neighbours_read = OtherReads({i: torch.cat(s) for i, s in slots.items()},
                                           {i: torch.cat(w) for i, w in weights.items()}) if slots else None

        def per_slot(found: dict[int, list[torch.Tensor]]) -> dict[int, torch.Tensor]:
            """Per layer and slot: how many names' (name, slot) keys hold it."""
            return {idx: torch.bincount(torch.cat(parts).unique() % self.lm.memories[idx].num_slots,
                                        minlength=self.lm.memories[idx].num_slots) for idx, parts in found.items()}
        return per_slot(keys), per_slot(answer_keys)

    def _slot_weight(self, idx: int) -> torch.Tensor | None:
        """Per-slot score weight: config.trained_slot_weight where the table's row is already trained, times
        config.capped_slot_weight where it is at the norm cap."""
        trained, capped, cap = self.config.trained_slot_weight, self.config.capped_slot_weight, self.config.max_row_norm
        if trained == 1.0 and capped == 1.0:
            return None
        values = self.lm.memories[idx].values.detach()
        weight = torch.ones(len(values))
        if trained != 1.0:
            weight[values.ne(0).any(dim=1).cpu()] = trained
        if capped != 1.0 and cap is not None:
            weight[at_cap(values.float().norm(dim=1).cpu(), cap)] *= capped
        return weight

    def _begin(self, batch: TrainingBatch) -> None:
        self.finish()
        self._batch = batch
        self._slots = {i: s.to(self.lm.device) for i, s in self.select(batch).items()}
        for idx, slots in self._slots.items():
            memory = self.lm.memories[idx]
            rows = torch.nn.Parameter(torch.zeros(len(slots), memory.values.shape[1], device=self.lm.device))
            memory.attach_trainable_rows(slots, rows)
            self._rows[idx] = rows
            if self.config.max_row_norm is not None:  # the table is written only in finish()
                self._base[idx] = memory.values[slots].detach().float()  # indexing copies
        if self.config.keep_weight > 0:
            self._kept = [reads.reading(self._slots) for reads in (self.others, self._neighbours_read)
                          if reads is not None]
        params = list(self._rows.values())
        if self.config.optimizer == "adam":
            self._optimizer = torch.optim.Adam(params, lr=self.config.lr)
        else:
            self._optimizer = torch.optim.SGD(params, lr=self.config.lr)

    def step(self, batch: TrainingBatch) -> StepReport:
        start = time.perf_counter()
        if batch is not self._batch:
            self._begin(batch)
        assert self._optimizer is not None
        loss = self._loss(batch)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        if self.config.max_row_norm is not None:
            self._cap_row_norms(self.config.max_row_norm)
        rows = sum(len(s) for s in self._slots.values())
        return StepReport(float(loss.detach()), time.perf_counter() - start, rows)

    @torch.no_grad()
    def _cap_row_norms(self, cap: float) -> None:
        """Project each selected row (table + trained delta) back onto the ball of radius `cap`."""
        for idx, rows in self._rows.items():
            base = self._base[idx]
            total = base + rows
            scale = (cap / total.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
            rows.copy_(total * scale - base)

    def _loss(self, batch: TrainingBatch) -> torch.Tensor:
        """The batch loss (plus the locality penalty when it is on); from the lowest memory layer up, with logits
        only where labels are, when exact."""
        if self._fast is None:
            self._fast = self._fast_path_is_exact()
        if not self._fast or not self._hidden:
            loss = grouped_loss(self._groups or batch.by_length(), lambda _, group: lm_loss(self.lm, group))
        else:
            hidden = self._hidden
            loss = grouped_loss(self._groups, lambda i, group: self.lm.loss_from_layer(
                min(self.lm.memories), hidden[i], group.attention_mask, group.labels, group.input_ids))
        if self._kept:
            for idx, rows in self._rows.items():
                row_of_slot = self.lm.memories[idx].trainable_row_of_slot()
                for kept in self._kept:  # each text apart: one mean over all would let the corpus drown the neighbours
                    loss = loss + self.config.keep_weight * change_penalty(kept, idx, row_of_slot, rows)
        return loss

    @torch.no_grad()
    def _fast_path_is_exact(self) -> bool:
        """Checked once per learner, on one group: some architectures scale embeddings or transform logits."""
        if not self._hidden:
            return False
        group = self._groups[0]
        reference = float(lm_loss(self.lm, group))
        fast = float(self.lm.loss_from_layer(min(self.lm.memories), self._hidden[0], group.attention_mask,
                                             group.labels, group.input_ids))
        return abs(fast - reference) <= 1e-4 * max(1.0, abs(reference))

    @torch.no_grad()
    def finish(self) -> None:
        """Write the trained rows into the value tables and end the batch."""
        for idx, rows in self._rows.items():
            memory, slots = self.lm.memories[idx], self._slots[idx]
            before = memory.values[slots]
            for slot, row in zip(slots.tolist(), before.cpu(), strict=True):
                self.touched[idx].setdefault(slot, row)
            # Summed in float32 and rounded once into the table's dtype (a no-op for float32: index_add_'s result)
            memory.values.index_copy_(0, slots, (before.float() + rows.detach()).to(memory.values.dtype))
            memory.detach_trainable_rows()
        if self._rows:
            for fact_id, layers in self._batch_writes.items():
                mine = self.writes.setdefault(fact_id, {})
                for idx, slots in layers.items():
                    mine[idx] = torch.unique(torch.cat([mine[idx], slots])) if idx in mine else slots
        self._end_batch()

    def abort(self) -> None:
        """Drop the current batch's rows without writing them back."""
        for idx in self._rows:
            self.lm.memories[idx].detach_trainable_rows()
        self._end_batch()

    def _end_batch(self) -> None:
        self._rows, self._slots, self._base, self._batch, self._optimizer, self._hidden = {}, {}, {}, None, None, None
        self._groups, self._kept, self._neighbours_read = [], [], None
        self._batch_writes = {}

    def take_writes(self) -> dict[str, dict[int, torch.Tensor]]:
        """The rows each fact wrote since the last call (fact id -> layer -> sorted slot ids), and forget them."""
        writes, self.writes = self.writes, {}
        return writes

    def take_touched(self) -> dict[int, torch.Tensor]:
        """Slot ids changed since the last call, per layer (sorted), and forget them."""
        return {i: ids for i, (ids, _) in self.take_touched_with_before().items()}

    def take_touched_with_before(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """(sorted slot ids, their rows before the first change) per layer since the last call."""
        out = {}
        for idx, rows in self.touched.items():
            ids = sorted(rows)
            values = self.lm.memories[idx].values
            before = torch.stack([rows[i] for i in ids]) if ids else torch.zeros(0, values.shape[1], dtype=values.dtype)
            out[idx] = (torch.tensor(ids, dtype=torch.long), before)
        self.touched = {i: {} for i in self.lm.memories}
        return out


class _DenseLearner:
    """A baseline that trains `self.params` with AdamW, updating in place at every step."""

    name = "dense"

    def __init__(self, lm: MemoryLM, params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> None:
        self.lm, self.params = lm, params
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def step(self, batch: TrainingBatch) -> StepReport:
        start = time.perf_counter()
        loss = grouped_loss(batch.by_length(), lambda _, group: lm_loss(self.lm, group))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return StepReport(float(loss.detach()), time.perf_counter() - start, sum(p.numel() for p in self.params))

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass  # baselines are benchmarked, not served: a failed step has nothing to undo


class FullFinetuneLearner(_DenseLearner):
    """Baseline: every weight of the base model trains with AdamW (the memory stays at zero)."""

    name = "full"

    def __init__(self, lm: MemoryLM, lr: float = 1e-5, weight_decay: float = 0.0) -> None:
        memory_params = {id(p) for m in lm.memories.values() for p in m.parameters()}
        params = [p for p in lm.model.parameters() if id(p) not in memory_params]
        for p in params:
            p.requires_grad_(True)
        super().__init__(lm, params, lr, weight_decay)


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraLearner(_DenseLearner):
    """Baseline: LoRA adapters (peft) on the attention and MLP projections, trained with AdamW."""

    name = "lora"

    def __init__(self, lm: MemoryLM, lr: float = 1e-3, rank: int = 16, alpha: int = 32) -> None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
        lm.model = get_peft_model(lm.model, config)
        super().__init__(lm, [p for p in lm.model.parameters() if p.requires_grad], lr, 0.0)
