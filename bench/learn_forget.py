"""Learning vs forgetting: the same fact stream through sparse memory, full finetuning and LoRA.

Every method starts from the same version-0 model and sees the same batches (statements,
paraphrases and the model's own questions, never the evaluation question). After every K facts
it records learning (taught questions answered: answer contained, token F1) and forgetting
(retention-probe F1 and held-out NLL relative to version 0).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from bench import report
from bench.facts import EvalFact
from bench.methods import MethodSpec
from bench.retrieval import Retriever, noted_answers
from bench.table_log import TableLog
from model.config import QuestionWriter, StepSchedule
from model.contrast import Contrast
from model.evaluation import contains_answer, mean_nll, token_f1
from model.facts import build_batch
from model.learners import SparseMemoryLearner, TeachReport, teach
from model.lm import MemoryLM
from model.notes import NOTES
from model.probe import ProbeQuestion, read_probe
from model.provenance import RowWriters
from model.questions import with_synthetic_questions
from model.snapshot import load_snapshot
from model.statistics import SlotStats
from worker.teaching import teach_facts

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Baseline:
    probe_f1: float  # version 0's mean F1 on the retention probe
    nll: float  # version 0's held-out NLL
    probe_answered: float = 1.0  # version 0's share of probe questions answered (contains); 1 on a curated probe


@dataclass(frozen=True)
class Checkpoint:
    facts_taught: int
    learned: float  # share of taught facts whose question is answered (answer contained)
    learned_f1: float
    retention_change: float  # probe F1 relative to version 0 (-0.05 = 5% lower)
    nll_change: float  # held-out NLL relative to version 0
    seconds: float  # training time so far
    steps: int | None = None  # optimisation steps so far (None in files written before it was recorded)
    # Share of probe questions still answered (answer contained). F1 scores whole sentences and moves
    # with their wording; this counts what is still known. None in files written before it was recorded.
    probe_answered: float | None = None
    # Shares answered of the first and of the most recent K facts taught (K: the checkpoint interval); None in
    # files written before they were recorded.
    learned_first: float | None = None
    learned_recent: float | None = None
    # Indices of the taught facts and of the probe questions not answered here (what `bench forgetting` follows
    # from checkpoint to checkpoint); None in files written before they were recorded.
    missed: list[int] | None = None
    probe_missed: list[int] | None = None
    # Median seconds to answer one taught question asked alone (what a user waits); None in older files.
    answer_seconds: float | None = None


@dataclass
class MethodResult:
    spec: MethodSpec
    checkpoints: list[Checkpoint] = field(default_factory=list)
    steps: int | None = 0

    @property
    def final(self) -> Checkpoint:
        return self.checkpoints[-1]

    def as_dict(self) -> dict:
        return {"label": self.spec.label, "settings": asdict(self.spec), "steps": self.steps,
                "checkpoints": [asdict(c) for c in self.checkpoints]}

    @classmethod
    def from_dict(cls, data: dict) -> MethodResult:
        return cls(MethodSpec(**data["settings"]), [Checkpoint(**c) for c in data["checkpoints"]], data["steps"])

    def up_to(self, facts: int) -> MethodResult:
        """The result as it stood after `facts` facts (its last checkpoint at or before that)."""
        kept = [c for c in self.checkpoints if c.facts_taught <= facts]
        if not kept:
            raise ValueError(f"{self.spec.label}: no checkpoint at or before {facts} facts")
        return MethodResult(self.spec, kept, self.steps if kept[-1] == self.final else kept[-1].steps)


def read_results(directories: Sequence[Path]) -> list[MethodResult]:
    """What earlier runs measured, from the progress files they rewrite after every checkpoint.

    Finished or stopped, every run leaves them, so settings run separately (or a run cut short)
    can still be compared in one table. A setting found in more than one of them (the same settings on
    another seed's stream) is told apart by its directory's name in its title.
    """
    found: list[tuple[Path, MethodResult]] = []
    for directory in map(Path, directories):
        files = sorted((directory / "progress").glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no progress files in {directory / 'progress'}")
        found += [(directory, MethodResult.from_dict(json.loads(f.read_text()))) for f in files]
    seen = Counter(r.spec.title for _, r in found)
    return [MethodResult(replace(r.spec, run=d.name), r.checkpoints, r.steps) if seen[r.spec.title] > 1 else r
            for d, r in found if r.checkpoints]


def probe_scores(lm: MemoryLM, probe: Sequence[ProbeQuestion], max_new_tokens: int = 24) -> tuple[float, float]:
    """(mean F1, share answered) on the retention probe, from one generation."""
    f1, hits = probe_hits(lm, probe, max_new_tokens)
    return f1, sum(hits) / len(probe)


def probe_hits(lm: MemoryLM, probe: Sequence[ProbeQuestion], max_new_tokens: int = 24,
               retriever: Retriever | None = None, scoped: bool = False) -> tuple[float, list[bool]]:
    """(mean F1, whether each question is answered) on the retention probe, from one generation (with the notes
    `retriever` finds: bench/retrieval.noted_answers)."""
    questions = [q.question for q in probe]
    answers = noted_answers(lm, questions, max_new_tokens, retriever, scoped)
    scores = [max(token_f1(a, g) for g in (q.answer, *q.aliases)) for q, a in zip(probe, answers, strict=True)]
    return sum(scores) / len(scores), [q.correct(a) for q, a in zip(probe, answers, strict=True)]


def measure_baseline(lm: MemoryLM, probe: Sequence[ProbeQuestion], heldout: Sequence[str]) -> Baseline:
    f1, answered = probe_scores(lm, probe)
    baseline = Baseline(f1, mean_nll(lm, heldout), answered)
    if baseline.probe_f1 <= 0:
        raise ValueError("version 0 answers none of the retention probe: retention cannot be measured against it "
                         "(curate a probe for this model with `smft data probe`)")
    return baseline


def answer_latency(lm: MemoryLM, questions: Sequence[str], retriever: Retriever | None = None, repeats: int = 5,
                   scoped: bool = False) -> float:
    """Median seconds to answer one question asked alone (up to 32 tokens, as the checkpoint asks)."""
    times = []
    for question in questions[:repeats]:
        start = time.perf_counter()
        noted_answers(lm, [question], 32, retriever, scoped)
        times.append(time.perf_counter() - start)
    return report.percentile(times, 0.5)


def checkpoint(lm: MemoryLM, taught: Sequence[EvalFact], probe: Sequence[ProbeQuestion], heldout: Sequence[str],
               baseline: Baseline, seconds: float, window: int | None = None, retriever: Retriever | None = None,
               scoped: bool = False) -> Checkpoint:
    """Learning and forgetting now; with `window`, also the share answered of the first and of the most recent
    `window` facts taught. Every question is asked with the notes `retriever` finds (and decoded against its
    prompt without them where it asks for contrast); `scoped`: only the questions in the notes' scope read the
    memory (bench/retrieval.noted_answers). The held-out NLL is the memory's own."""
    questions = [f.question for f in taught]
    answers = noted_answers(lm, questions, 32, retriever, scoped)
    hits = [contains_answer(a, f.answer) for a, f in zip(answers, taught, strict=True)]
    f1 = sum(token_f1(a, f.answer) for a, f in zip(answers, taught, strict=True)) / len(taught)
    kept_f1, probe_answered = probe_hits(lm, probe, retriever=retriever, scoped=scoped)
    nll_change = mean_nll(lm, heldout) / baseline.nll - 1
    first = recent = None
    if window:
        first, recent = sum(hits[:window]) / len(hits[:window]), sum(hits[-window:]) / len(hits[-window:])
    return Checkpoint(len(taught), sum(hits) / len(taught), f1, kept_f1 / baseline.probe_f1 - 1, nll_change,
                      seconds, probe_answered=sum(probe_answered) / len(probe), learned_first=first,
                      learned_recent=recent, missed=[i for i, hit in enumerate(hits) if not hit],
                      probe_missed=[i for i, hit in enumerate(probe_answered) if not hit],
                      answer_seconds=answer_latency(lm, questions[-5:], retriever, scoped=scoped))


@dataclass(frozen=True)
class Stream:
    """What every method is run on and measured with: the same facts, probe, text and schedule."""

    facts: tuple[EvalFact, ...]
    probe: tuple[ProbeQuestion, ...]
    heldout: tuple[str, ...]
    baseline: Baseline
    schedule: StepSchedule
    eval_every: int


def run_method(v0: MemoryLM, stats: SlotStats, spec: MethodSpec, stream: Stream,
               progress: Path | None = None, position: int = 0) -> MethodResult:
    """Stream the facts through a fresh copy of version 0: one per batch, or for `service` in the worker's
    batches, taught by the worker's own code (its questions, neighbours, steps; one publish per batch).

    With `progress`, the result so far is rewritten there after every checkpoint, so a long run that is
    stopped still leaves what it measured; a memory method also saves the rows each checkpoint changed beside
    it (bench/table_log.py, a few per cent of the table), and a later run of the same setting on the same stream,
    here or where those files were copied, resumes from the last checkpoint.
    """
    if spec.notes is not None:
        raise ValueError(f"{spec.label}: notes are asked over a saved run (ask_with_notes), not trained with")
    lm = copy.deepcopy(v0)
    retriever = Retriever(spec.top_t, spec.min_match) if spec.method == "retrieval" else None
    learner = spec.learner(lm, stats) if retriever is None else None
    facts = stream.facts
    result, trained, done = MethodResult(spec), 0.0, 0
    writers = RowWriters() if spec.memory_only else None
    tables = (TableLog(progress.with_suffix(""), _stream_key(stream)) if progress is not None and spec.memory_only
              else None)
    if tables is not None:
        if (resumed := _resume(lm, spec, progress, tables)) is not None:
            result, writers = resumed
            trained, done = result.final.seconds, result.final.facts_taught
            log.info("%s: resumed after %d facts", spec.label, done)
        else:
            tables.clear()
        tables.start(lm, done)
    written: dict[str, dict[int, torch.Tensor]] = {}  # fact id -> layer -> rows it wrote since the last checkpoint
    settings = spec.worker_settings() if spec.method == "service" else None
    size = settings.batch_facts if settings is not None else 1
    bar = tqdm(total=len(facts), initial=done, desc=spec.label, unit="fact", position=position, leave=False)
    while done < len(facts):
        chunk = facts[done:done + size]
        if retriever is not None:
            start = time.perf_counter()
            retriever.add([f.fact for f in chunk])
            taught = TeachReport(0, 0.0, 0.0, time.perf_counter() - start)
        elif settings is not None:
            taught = teach_facts(lm, learner, [f.fact for f in chunk], settings)
            if isinstance(learner, SparseMemoryLearner):
                learner.take_touched()  # the worker publishes here: records start anew
        else:
            taught = teach(learner, build_batch([f.fact for f in chunk], lm.tokenizer).to(lm.device), stream.schedule)
        if writers is not None:
            writes = learner.take_writes()  # type: ignore[attr-defined]
            writers.update(writes)
            written.update(writes)
        before, done = done, done + len(chunk)
        bar.update(len(chunk))
        result.steps += taught.steps
        trained += taught.seconds
        if done // stream.eval_every > before // stream.eval_every or done == len(facts):
            point = checkpoint(lm, facts[:done], stream.probe, stream.heldout, stream.baseline, trained,
                               window=stream.eval_every, retriever=retriever)
            result.checkpoints.append(replace(point, steps=result.steps))
            if progress is not None:
                if tables is not None:
                    tables.write(lm, done, written)
                    written = {}
                report.write_json(progress, result.as_dict())
    bar.close()
    return result


def progress_file(progress_dir: Path, spec: MethodSpec) -> Path:
    """Where a setting's progress is kept (its deltas in the folder of the same name beside it). A label too long
    for a file name (255 bytes) is cut, with a hash of the whole label so two settings never share a file."""
    name = re.sub(r"[^\w.=-]+", "_", spec.label)
    if len(name) > 250:
        name = f"{name[:233]}_{hashlib.sha1(spec.label.encode()).hexdigest()[:16]}"
    return progress_dir / (name + ".json")


def ask_with_notes(v0: MemoryLM, spec: MethodSpec, stream: Stream, progress_dir: Path, min_match: float,
                   scoped: bool = False, contrast: float | None = None, grounding: bool = False) -> MethodResult:
    """A memory setting's saved run asked again with notes: its table replayed checkpoint by checkpoint from the
    deltas the run saved (nothing trained, so the memory is exactly the run's) and at each, the taught statements
    BM25 finds above the floor `min_match` put into the prompt before the memory answers; `scoped`: a question
    that finds none and names nothing a taught fact names is answered without the memory (as version 0), as the
    API's SMFT_MEMORY_SCOPE=noted does; `contrast`: an answer with notes is decoded against version 0 given its
    prompt without them, at most this alpha (SMFT_NOTE_CONTRAST, model/contrast.py); `grounding`: one that took
    nothing from its notes is made again without them (SMFT_NOTE_GROUNDING).
    Kept under the setting's label with the notes named, and resumed from there."""
    source = progress_file(progress_dir, spec)
    if not source.exists():
        raise FileNotFoundError(f"{source}: run the setting first (its deltas are what is asked)")
    saved = MethodResult.from_dict(json.loads(source.read_text()))
    if saved.spec != spec:
        raise ValueError(f"{source} holds another setting: {saved.spec.label}")
    noted = replace(spec, notes=min_match, scoped=scoped, contrast=contrast, grounding=grounding)
    progress = progress_file(progress_dir, noted)
    result = MethodResult(noted, steps=saved.steps)
    if progress.exists() and (earlier := MethodResult.from_dict(json.loads(progress.read_text()))).spec == noted:
        result = earlier
    done = result.final.facts_taught if result.checkpoints else 0
    lm = copy.deepcopy(v0)
    retriever = Retriever(NOTES, min_match, Contrast(contrast) if contrast is not None else None, grounding)
    tables = TableLog(source.with_suffix(""), _stream_key(stream))
    after = 0
    for point in tqdm(saved.checkpoints, desc=noted.label, unit="checkpoint"):
        if tables.apply(lm, point.facts_taught, after) is None:
            break
        retriever.add([f.fact for f in stream.facts[after:point.facts_taught]])
        after = point.facts_taught
        if after <= done:
            continue
        asked = checkpoint(lm, stream.facts[:after], stream.probe, stream.heldout, stream.baseline, point.seconds,
                           window=stream.eval_every, retriever=retriever, scoped=scoped)
        result.checkpoints.append(replace(asked, steps=point.steps))
        report.write_json(progress, result.as_dict())
    return result


def stream_key(facts: Sequence[EvalFact], schedule: StepSchedule, eval_every: int) -> str:
    """What a saved table was trained on: the facts in order, the schedule and the checkpoints."""
    text = json.dumps([[f.fact.text, *f.fact.paraphrases] for f in facts] + [asdict(schedule), eval_every])
    return hashlib.sha256(text.encode()).hexdigest()


def _stream_key(stream: Stream) -> str:
    return stream_key(stream.facts, stream.schedule, stream.eval_every)


def _resume(lm: MemoryLM, spec: MethodSpec, progress: Path,
            tables: TableLog) -> tuple[MethodResult, RowWriters] | None:
    """The result so far and who wrote which rows, with the table replayed into `lm` (at version 0), as far as
    this setting's progress and its deltas on this stream agree; None (start over) when not even the first."""
    if not progress.exists():
        return None
    saved = MethodResult.from_dict(json.loads(progress.read_text()))
    if saved.spec != spec or not saved.checkpoints:
        return None
    facts, writers = tables.replay(lm, [c.facts_taught for c in saved.checkpoints])
    if facts == 0:
        return None
    return saved.up_to(facts), writers


def _method_child(model: str, snapshot: str, device: str, spec: MethodSpec, stream: Stream, threads: int,
                  progress: str | None, position: int) -> MethodResult:
    torch.set_num_threads(threads)
    v0, stats = load_snapshot(model, Path(snapshot), device)
    return run_method(v0, stats, spec, stream, Path(progress) if progress else None, position)


def in_own_process(fn: Callable, *args):
    """fn(*args) in a fresh spawned process of its own.

    A child that dies (the kernel's OOM killer) raises BrokenProcessPool here and takes no other
    call down with it, as it would in a pool shared by several settings.
    """
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def result_or_progress(spec: MethodSpec, future: Future, progress: str | None) -> MethodResult | None:
    """A setting's result; if its process died, what its progress file recorded (None if nothing)."""
    try:
        return future.result()
    except BrokenProcessPool:
        saved = Path(progress) if progress else None
        if saved is None or not saved.exists():
            log.warning("%s: its process died before the first checkpoint; left out", spec.label)
            return None
        result = MethodResult.from_dict(json.loads(saved.read_text()))
        log.warning("%s: its process died; reporting its last checkpoint (%d facts)", spec.label,
                    result.final.facts_taught)
        return result


def run_methods(model: str, snapshot: Path, device: str, specs: Sequence[MethodSpec], stream: Stream,
                jobs: int = 1, progress_dir: Path | None = None,
                loaded: tuple[MemoryLM, SlotStats] | None = None) -> list[MethodResult]:
    """Every setting from the version-0 snapshot, `jobs` of them at a time in their own processes.

    Settings are independent, so running them side by side (each with its share of the cores)
    finishes a sweep sooner than one after another. With one job they run here, on `loaded`
    when the snapshot is already in memory. A setting whose process dies is reported as far as
    its progress file goes.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def progress(spec: MethodSpec) -> str | None:
        if progress_dir is None:
            return None
        progress_dir.mkdir(parents=True, exist_ok=True)
        return str(progress_file(progress_dir, spec))

    if jobs == 1:
        v0, stats = loaded or load_snapshot(model, snapshot, device)
        return [run_method(v0, stats, spec, stream, Path(p) if (p := progress(spec)) else None) for spec in specs]
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(in_own_process, _method_child, model, str(snapshot), device, spec, stream, threads,
                               progress(spec), i % jobs) for i, spec in enumerate(specs)]
    results = [result_or_progress(spec, f, progress(spec)) for spec, f in zip(specs, futures, strict=True)]
    return [r for r in results if r is not None]


def with_questions(v0: MemoryLM, facts: Sequence[EvalFact], writer: QuestionWriter = "examples") -> list[EvalFact]:
    """The facts with the model's own questions attached once, so every method sees the same batches; `writer` as
    the worker's SMFT_QUESTION_WRITER (a saved baseline's progress does not record which wrote its questions)."""
    taught = with_synthetic_questions(v0, [f.fact for f in facts], writer=writer)
    return [replace(f, fact=t) for t, f in zip(taught, facts, strict=True)]


def compared_at(results: Sequence[MethodResult]) -> int | None:
    """The facts taught at which settings are compared: the fewest any of them reached.

    Learning falls and forgetting grows as facts arrive, so a setting stopped early would look
    better than one that ran on if each were judged at its own last checkpoint. None where some
    setting has no checkpoint that early (runs evaluated at different intervals): then each is
    judged at its last.
    """
    facts = min(r.final.facts_taught for r in results)
    return facts if all(r.checkpoints[0].facts_taught <= facts for r in results) else None


def _judged_at(results: Sequence[MethodResult]) -> dict[int, Checkpoint]:
    """Each setting's checkpoint as it stood after `compared_at(results)` facts, by id of its result."""
    facts = compared_at(results)
    return {id(r): (r if facts is None else r.up_to(facts)).final for r in results}


def common_learning(results: Sequence[MethodResult]) -> float:
    """The most learning that every method reaches with one of its settings: where all can be matched.

    The paper compares forgetting at the same learning. Where one method never learns as much as
    another (full finetuning and LoRA on a one-fact-per-step stream), the level they share is the
    weaker method's best, and the stronger method is matched there by a gentler setting.
    """
    at = _judged_at(results)
    best: dict[str, float] = {}
    for r in results:
        best[r.spec.kind] = max(best.get(r.spec.kind, 0.0), at[id(r)].learned)
    return min(best.values())


def at_matched_learning(results: Sequence[MethodResult], target: float) -> dict[str, MethodResult]:
    """Per method: the least-forgetting setting that reaches the target learning, else the best learner.

    Every setting is judged as it stood after `compared_at(results)` facts.
    """
    at = _judged_at(results)
    chosen: dict[str, MethodResult] = {}
    for method in dict.fromkeys(r.spec.kind for r in results):
        runs = [r for r in results if r.spec.kind == method]
        reached = [r for r in runs if at[id(r)].learned >= target]
        chosen[method] = (max(reached, key=lambda r: at[id(r)].retention_change) if reached
                          else max(runs, key=lambda r: at[id(r)].learned))
    return chosen


def write_plots(results: Sequence[MethodResult], directory: Path) -> list[str]:
    """Learning vs forgetting per setting, and both over the number of facts taught (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in results:
        ax.scatter([-100 * r.final.retention_change], [100 * r.final.learned], label=textwrap.fill(r.spec.title, 90))
    ax.set_xlabel("retention-probe F1 drop vs version 0 (%)")
    ax.set_ylabel("taught facts answered (%)")
    ax.set_title("learning vs forgetting")
    # below the axes, not on the points: a service setting's label is a line long
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.16), borderaxespad=0)
    paths.append(str(directory / "learning_vs_forgetting.png"))
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(6, 8.5), sharex=True)
    for r in results:
        xs = [c.facts_taught for c in r.checkpoints]
        line, = top.plot(xs, [100 * c.learned for c in r.checkpoints], marker="o",
                         label=textwrap.fill(r.spec.title, 90))
        if all(c.probe_answered is not None for c in r.checkpoints):  # dashed: probe questions still answered
            top.plot(xs, [100 * c.probe_answered for c in r.checkpoints], linestyle="--", color=line.get_color())
        middle.plot(xs, [100 * c.retention_change for c in r.checkpoints], marker="o")
        bottom.plot(xs, [100 * c.nll_change for c in r.checkpoints], marker="o")
    top.set_ylabel("learned; dashed: probe kept (%)")
    middle.set_ylabel("retention F1 change (%)")
    bottom.set_ylabel("held-out NLL change (%)")
    bottom.set_xlabel("facts taught")
    # above the curves, not on them: a service setting's label is a line long
    top.legend(fontsize=6, loc="lower left", bbox_to_anchor=(0, 1.02), borderaxespad=0)
    fig.tight_layout()
    paths.append(str(directory / "over_facts.png"))
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def write_report(results: Sequence[MethodResult], out: Path, meta: dict, target: float | None) -> str:
    """The JSON report, the Markdown table and the plots of a learn-forget comparison; returns the table.

    Without a target, methods are matched at the most learning every one of them reaches.
    """
    out.mkdir(parents=True, exist_ok=True)
    if target is None:
        target = common_learning(results)
    chosen = at_matched_learning(results, target)
    facts = compared_at(results)
    table = report.learn_forget_table(results, chosen) + "\n\n" + report.matching_note(target, facts, results)
    curves = [report.learn_forget_curve(r) for r in results if r.final.learned_recent is not None]
    if curves:  # K: the checkpoint interval
        table += "\n\nOver the stream (K = facts between checkpoints):\n\n" + "\n\n".join(curves)
    churn = [c for c in map(report.learn_forget_churn, results) if c is not None]
    capitals = {i for i, q in enumerate(read_probe()) if "capital" in q.question.lower()}
    kinds = [k for r in results if (k := report.learn_forget_probe_kinds(r, capitals)) is not None]
    if churn or kinds:
        table += "\n\n" + "\n\n".join(churn + kinds)
    report.write_json(out / "learn_forget.json", {
        **meta, "target_learning": target, "matched_at_facts": facts,
        "matched": {m: r.spec.label for m, r in chosen.items()}, "results": [r.as_dict() for r in results]})
    (out / "learn_forget.md").write_text(table + "\n")
    plots = write_plots(results, out)
    return table + f"\n\nwrote {out / 'learn_forget.json'}, {out / 'learn_forget.md'}, " + ", ".join(plots)
