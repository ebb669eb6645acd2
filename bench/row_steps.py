"""How far teaching moves each row it trains, per optimizer (`smft bench steps`).

Every written row is read by some question besides the facts that wrote it, and what it adds there
grows with its norm. Adam scales each coordinate's step by that coordinate's own gradient history,
so every selected row moves about `lr` per coordinate and step, whether its gradient is the batch's
largest or a thousandth of it; plain SGD moves each row in proportion to its gradient. This teaches
the same facts from the same version 0 with each optimizer setting, in the worker's batches and with
its code (`worker/teaching.py`), and reports, beside what was learned, how far the rows moved: their
change's norm (10th, 50th, 90th percentile), its summed square (the write's energy) and the rows
left at the norm cap.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench.facts import EvalFact
from model.config import OptimizerName
from model.evaluation import contains_answer, generate_answers
from model.learners import SparseMemoryLearner
from model.lm import MemoryLM
from model.memory import at_cap
from model.statistics import SlotStats
from worker.settings import WorkerSettings
from worker.teaching import teach_facts


@dataclass(frozen=True)
class OptimizerSetting:
    optimizer: OptimizerName
    lr: float

    @classmethod
    def parse(cls, text: str) -> OptimizerSetting:
        """'adam:1' or 'sgd:1e6'."""
        name, _, lr = text.partition(":")
        if name not in ("adam", "sgd") or not lr:
            raise ValueError(f"an optimizer setting is adam:LR or sgd:LR, got {text!r}")
        value = float(lr)
        if value <= 0:
            raise ValueError(f"a learning rate must be > 0, got {text!r}")
        return cls(name, value)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return f"{self.optimizer} lr {self.lr:g}"


@dataclass(frozen=True)
class RowSteps:
    setting: str
    first_loss: float  # mean over the batches of the loss before their first step
    last_loss: float  # ... and before their last step
    answered: float  # share of the facts answered by their question afterwards
    rows_written: int  # rows whose value changed
    change_norm: tuple[float, float, float]  # 10th, 50th and 90th percentile of a written row's change
    energy: float  # summed squared change over the rows
    at_cap: int  # rows left at the norm cap
    seconds: float  # training time


def measure(v0: MemoryLM, stats: SlotStats, facts: Sequence[EvalFact], settings: WorkerSettings,
            setting: OptimizerSetting) -> RowSteps:
    """Teach `facts` to a copy of version 0 in the worker's batches with this optimizer setting."""
    lm = copy.deepcopy(v0)
    settings = settings.model_copy(update={"optimizer": setting.optimizer, "lr": setting.lr})
    learner = SparseMemoryLearner(lm, stats, settings.sparse_config())
    size, first, last, seconds = settings.batch_facts, [], [], 0.0
    for start in range(0, len(facts), size):
        report = teach_facts(lm, learner, [f.fact for f in facts[start:start + size]], settings)
        first.append(report.first_loss)
        last.append(report.last_loss)
        seconds += report.seconds
    answers = generate_answers(lm, [f.question for f in facts], 32)
    answered = sum(contains_answer(a, f.answer) for a, f in zip(answers, facts, strict=True)) / len(facts)
    with torch.no_grad():  # the learner's undo record: every row it changed, with its value before
        change = torch.cat([(lm.memories[idx].values.detach()[slots].float() - before.to(lm.device).float())
                            .norm(dim=1).cpu()
                            for idx, (slots, before) in learner.take_touched_with_before().items()])
        norms = torch.cat([m.values.detach().float().norm(dim=1) for m in lm.memories.values()])
    written = change[change > 0].double()
    quantiles = torch.quantile(written, torch.tensor([0.1, 0.5, 0.9], dtype=torch.double)).tolist() \
        if len(written) else [0.0, 0.0, 0.0]
    capped = int(at_cap(norms, settings.max_row_norm).sum()) if settings.max_row_norm is not None else 0
    return RowSteps(setting.label, sum(first) / len(first), sum(last) / len(last), answered, len(written),
                    (quantiles[0], quantiles[1], quantiles[2]), float((written ** 2).sum()), capped, seconds)


def steps_table(rows: Sequence[RowSteps], facts: int) -> str:
    lines = [f"| setting | loss first -> last | answered of {facts} | rows written | change norm p10 / p50 / p90 "
             "| energy | at the cap | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        p10, p50, p90 = r.change_norm
        lines.append(f"| {r.setting} | {r.first_loss:.2f} -> {r.last_loss:.2f} | {r.answered:.0%} | {r.rows_written:,} "
                     f"| {p10:.0f} / {p50:.0f} / {p90:.0f} | {r.energy:.3g} | {r.at_cap:,} | {r.seconds:.0f} |")
    return "\n".join(lines)

