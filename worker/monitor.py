"""The forgetting monitor: the worker evaluates the live memory every M versions.

Each evaluation uses a rotating window of the retention probe (so learning stalls for seconds,
not minutes), every Nth the whole probe, and compares it with version 0 on the same questions;
plus held-out NLL relative to version 0, recall on recently taught facts that came with a
question, the share of value rows ever updated, and the queue. Points are appended to a capped
Redis list the API serves.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

from model.corpus import load_corpus
from model.evaluation import contains_answer, generate_answers, mean_nll, token_f1
from model.lm import MemoryLM
from model.probe import ProbeQuestion, read_probe
from worker.store import RedisStore

log = logging.getLogger(__name__)
HISTORY_LIMIT = 1000


@dataclass(frozen=True)
class MonitorPoint:
    version: int
    at: float
    retention_change: float | None  # probe F1 on this window relative to version 0 on the same window
    probe_questions: int  # the window's size, or the whole probe's
    # Of the window's questions version 0 answered, the share still answered (answer contained): F1 on
    # whole sentences moves with their wording, this counts what is still known.
    probe_answered: float | None
    nll_change: float  # held-out NLL relative to version 0
    recall: float | None  # recent facts with a question whose answer is contained in the reply
    recall_facts: int
    slots_updated: int  # value rows changed since version 0 (all memory layers)
    slots_share: float
    queue_depth: int
    queue_age_s: float  # how long the oldest fact not yet learned has waited
    seconds: float  # how long this evaluation held up learning


def _f1(answer: str, q: ProbeQuestion) -> float:
    return max(token_f1(answer, g) for g in (q.answer, *q.aliases))


def _answers(lm: MemoryLM, questions: list[str], batch: int = 32,
             stop: threading.Event | None = None) -> list[str] | None:
    """Short greedy answers, a batch at a time to bound padding and memory; None once `stop` is set."""
    answers: list[str] = []
    for start in range(0, len(questions), batch):
        if stop is not None and stop.is_set():
            return None
        answers += generate_answers(lm, questions[start:start + batch], 24)
    return answers


class Monitor:
    def __init__(self, store: RedisStore, window: int = 32, full_every: int = 10, heldout_docs: int = 16,
                 probe_size: int = 0) -> None:
        self.store, self.window, self.full_every = store, window, full_every
        probe = read_probe()
        self.probe = [probe[i * len(probe) // probe_size] for i in range(probe_size)] \
            if 0 < probe_size < len(probe) else probe
        self.heldout = load_corpus().heldout_texts[:heldout_docs]
        self._offset = self._evaluations = 0

    def _questions(self) -> list[int]:
        """This evaluation's probe questions: the next window, or all of them every `full_every`th time."""
        self._evaluations += 1
        if self.full_every and self._evaluations % self.full_every == 0:
            return list(range(len(self.probe)))
        idx = [(self._offset + i) % len(self.probe) for i in range(min(self.window, len(self.probe)))]
        self._offset = (self._offset + len(idx)) % len(self.probe)
        return idx

    def baseline(self) -> dict | None:
        return self.store.monitor_baseline()

    def record_baseline(self, lm: MemoryLM, stop: threading.Event | None = None) -> bool:
        """Version 0 on the probe (per question) and the held-out text; once per deployment.

        It takes a minute or more on CPU, so it gives up (recording nothing, False) as soon as `stop`
        is set: a worker asked to stop should not hold on until the baseline is done.
        """
        answers = _answers(lm, [q.question for q in self.probe], stop=stop)
        if answers is None:
            return False
        body = {"probe_f1": [_f1(a, q) for a, q in zip(answers, self.probe, strict=True)],
                "probe_correct": [q.correct(a) for a, q in zip(answers, self.probe, strict=True)],
                "nll": mean_nll(lm, self.heldout), "probe_questions": len(self.probe)}
        self.store.set_monitor_baseline(body)
        return True

    def evaluate(self, lm: MemoryLM, version: int, recent: list[tuple[str, str]]) -> MonitorPoint:
        start = time.perf_counter()
        base = self.baseline()
        if base is None:
            raise RuntimeError("no monitor baseline recorded for version 0")
        idx = self._questions()
        answers = _answers(lm, [self.probe[i].question for i in idx])
        assert answers is not None  # None only when stopped, and no stop is passed here
        now_f1 = sum(_f1(a, self.probe[i]) for a, i in zip(answers, idx, strict=True))
        base_f1 = sum(base["probe_f1"][i] for i in idx)
        known_before = base.get("probe_correct")  # absent in baselines recorded before it was
        known = [] if known_before is None else [(a, i) for a, i in zip(answers, idx, strict=True) if known_before[i]]
        answered = sum(self.probe[i].correct(a) for a, i in known) / len(known) if known else None
        recall = None
        if recent:
            replies = generate_answers(lm, [q for q, _ in recent], 32)
            recall = sum(contains_answer(r, a) for r, (_, a) in zip(replies, recent, strict=True)) / len(recent)
        # Values start at zero, so a nonzero row is one that learning has changed.
        changed = sum(int(m.values.detach().any(dim=1).sum()) for m in lm.memories.values())
        total = sum(m.num_slots for m in lm.memories.values())
        point = MonitorPoint(
            version=version, at=time.time(),
            retention_change=now_f1 / base_f1 - 1 if base_f1 > 0 else None, probe_questions=len(idx),
            probe_answered=answered,
            nll_change=mean_nll(lm, self.heldout) / base["nll"] - 1,
            recall=recall, recall_facts=len(recent), slots_updated=changed, slots_share=changed / total,
            queue_depth=self.store.queue_depth(), queue_age_s=self.store.queue_age_s(),
            seconds=time.perf_counter() - start,
        )
        self.store.append_monitor_point(asdict(point), keep=HISTORY_LIMIT)
        log.info("monitor v%d: retention %s, NLL %+.2f%%, recall %s, %d slots updated (%.2fs)", version,
                 "n/a" if point.retention_change is None else f"{point.retention_change:+.1%}",
                 100 * point.nll_change, "n/a" if recall is None else f"{recall:.0%}", changed, point.seconds)
        return point

    def take_request(self) -> bool:
        return self.store.take_evaluation_request()


def read_monitor(store: RedisStore, limit: int = 200) -> dict:
    """What the API serves: the version-0 baseline, the latest point and the history."""
    base = store.monitor_baseline()
    history = store.monitor_history(limit)
    baseline = None
    if base:
        probe_f1 = base["probe_f1"]
        correct = base.get("probe_correct")  # absent in baselines recorded before it was
        baseline = {"version": 0, "probe_f1": sum(probe_f1) / max(len(probe_f1), 1), "nll": base["nll"],
                    "probe_questions": base["probe_questions"],
                    "probe_answered": sum(correct) / max(len(correct), 1) if correct is not None else None}
    return {"baseline": baseline, "latest": history[-1] if history else None, "history": history}
