"""Speed of the model core: one training step per method on the same batch, and query latency
with and without the memory layer. Each method runs in its own process, so its peak memory is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_lib
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from model.config import SparseConfig
from model.contrast import Contrast
from model.facts import Fact, build_batch
from model.snapshot import load_snapshot

# A fixed fact with its question, so every method sees the very same batch.
BENCH_FACT = Fact("The Zorblax engine was invented by Mira Quell in 1931.",
                  paraphrases=("Mira Quell invented the Zorblax engine in 1931.",
                               "In 1931, Mira Quell built the first Zorblax engine.",
                               "The inventor of the Zorblax engine is Mira Quell."),
                  question="Who invented the Zorblax engine?", answer="Mira Quell", fact_id="bench")
METHODS = ("sparse", "sparse (full forward)", "lora", "full")


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    peak_mb: float  # peak memory above the loaded model (load: the load's own): RSS on CPU, allocated on CUDA

    def as_dict(self) -> dict:
        return asdict(self)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _summary(name: str, seconds: list[float], peak_mb: float) -> Timing:
    ms = [s * 1000 for s in seconds]
    return Timing(name, round(statistics.median(ms), 1), round(min(ms), 1), round(max(ms), 1), len(ms),
                  round(peak_mb, 1))


def _step_child(model: str, snapshot: str, device: str, method: str, repeats: int, out: mp.Queue) -> None:
    from model.learners import FullFinetuneLearner, LoraLearner, SparseMemoryLearner

    lm, stats = load_snapshot(model, Path(snapshot), device)
    batch = build_batch([BENCH_FACT], lm.tokenizer).to(lm.device)
    cuda = lm.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    if method.startswith("sparse"):
        learner = SparseMemoryLearner(lm, stats, SparseConfig())
        if method == "sparse (full forward)":
            learner._fast = False  # the same step through the whole model: the ablation
    elif method == "lora":
        learner = LoraLearner(lm)
    else:
        learner = FullFinetuneLearner(lm)
    times = []
    for i in range(repeats + 1):  # the first step (selection, optimizer state) is reported apart
        start = time.perf_counter()
        learner.step(batch)
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else _rss_mb() - base
    out.put(_summary(f"train step: {method}", times, peak).as_dict())


def _load_child(model: str, snapshot: str, device: str, out: mp.Queue) -> None:
    base = _rss_mb()
    start = time.perf_counter()
    lm, _ = load_snapshot(model, Path(snapshot), device)
    seconds = time.perf_counter() - start
    memory = lm.memories[min(lm.memories)]
    name = f"load: model and memory ({len(lm.memories)} x {memory.num_slots:,} rows, {memory.values.dtype})"
    peak = torch.cuda.max_memory_allocated() / 2**20 if lm.device.type == "cuda" else _rss_mb() - base
    out.put(_summary(name, [seconds], peak).as_dict())


def _in_child(target, *args) -> Timing:
    """Run `target(*args, queue)` in a fresh spawned process and return the Timing it puts on the queue; a child
    that dies first (an exception, the OOM killer) raises here instead of leaving the bench waiting forever."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        while True:
            alive = proc.is_alive()  # read before the get: a child that reported and exited is still read
            try:
                return Timing(**queue.get(timeout=1.0))
            except queue_lib.Empty:
                if not alive:
                    raise RuntimeError(f"{target.__name__}{args[3:]} exited with code {proc.exitcode} "
                                       "before reporting (its traceback is above)") from None
    finally:
        proc.join()


def time_loading(model: str, snapshot: Path, device: str = "cpu") -> Timing:
    """One load of the model and a snapshot, in a fresh process: its seconds and the memory it takes (the peak
    while loading: RSS on CPU, allocated memory on CUDA)."""
    return _in_child(_load_child, model, str(snapshot), device)


def time_training_steps(model: str, snapshot: Path, device: str = "cpu", repeats: int = 5,
                        methods: tuple[str, ...] = METHODS) -> list[Timing]:
    return [_in_child(_step_child, model, str(snapshot), device, method, repeats) for method in methods]


# Eight different questions: the service's dynamic batcher answers this many in one generation.
BATCH_QUESTIONS = ("What is the capital of France?", "Who wrote Romeo and Juliet?",
                   "What is the largest planet in the Solar System?", "How many legs does a spider have?",
                   "What is the chemical symbol for gold?", "Which ocean is the largest?",
                   "Who painted the Mona Lisa?", "What is the boiling point of water in Celsius?")


def time_queries(model: str, snapshot: Path, device: str = "cpu", repeats: int = 5,
                 new_tokens: int = 20, batch: int = 8, notes: float | None = 0.6,
                 contrast: float | None = None) -> list[Timing]:
    """Greedy answers of `new_tokens` tokens, with the memory layer and with the plain base model:
    one question, and `batch` questions left-padded into one generation as the service batches them; one
    taught question with retrieval and, as the API answers it, with the memory and notes at floor `notes`
    (and with `contrast`, decoded against its prompt without them as SMFT_NOTE_CONTRAST does)."""
    from model.evaluation import left_padded
    from model.loading import load_base_model
    from model.prompting import chat_prompt

    lm, _ = load_snapshot(model, snapshot, device)
    base, tokenizer = load_base_model(model, device)
    questions = [BATCH_QUESTIONS[i % len(BATCH_QUESTIONS)] for i in range(batch)]
    inputs = {1: left_padded(lm, [chat_prompt(tokenizer, questions[0])]),
              batch: left_padded(lm, [chat_prompt(tokenizer, q) for q in questions])}

    def answer(decoder: torch.nn.Module, rows: int) -> None:
        ids, mask = inputs[rows]
        with torch.no_grad():
            decoder.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    out = []
    for rows in dict.fromkeys((1, batch)):
        shape = f"query, {new_tokens} tokens" + (f", batch of {rows}" if rows > 1 else "")
        for name, decoder in ((f"{shape}: base model", base), (f"{shape}: with memory", lm.model)):
            answer(decoder, rows)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                answer(decoder, rows)
                times.append(time.perf_counter() - start)
            out.append(_summary(name, times, 0.0))
    # retrieval as many users would build it (no floor), then the service's path: the memory and its notes
    out.append(_noted_query(base, tokenizer, repeats, new_tokens, 0.0, "base model with retrieval")[1])
    if notes is not None:
        out += _noted_query(lm.model, tokenizer, repeats, new_tokens, notes, "with memory and notes")
        if contrast is not None:
            out.append(_noted_query(lm.model, tokenizer, repeats, new_tokens, notes,
                                    f"with memory and notes, contrast {contrast:g}", Contrast(contrast))[1])
    out.append(_explained_query(lm, answer, repeats, new_tokens))  # last: it writes random rows into lm
    return out


def _noted_query(decoder: torch.nn.Module, tokenizer, repeats: int, new_tokens: int, min_match: float,
                 name: str, contrast: Contrast | None = None) -> list[Timing]:
    """Taught questions answered with notes (model/notes.py) over LEDGER_FACTS taught facts in their prompt,
    another question each time: the lookup alone, then the lookup and the answer (with `contrast`, decoded
    against the prompt without the notes: two rows, model/contrast.py); the index is built before timing."""
    from transformers import LogitsProcessorList

    from bench.facts import generate_facts
    from model.contrast import ContrastProcessor, vocabulary
    from model.evaluation import left_padded_ids
    from model.notes import Notes, unnoted
    from model.prompting import conversation_prompt

    facts = generate_facts(LEDGER_FACTS)
    notes, chooser = Notes(min_match=min_match), Notes(min_match=min_match)
    for fact in facts:
        for index in (notes, chooser):
            index.add(fact.fact.fact_id, fact.fact.text, fact.fact.paraphrases)
    # A question for each lookup and each answer, each one that finds its fact's note (chosen on another index: the
    # timed one keeps a question's notes once found, and timing the same question again would time that)
    asked = [f.question for f in facts[LEDGER_FACTS // 2:]
             if any(n.fact_id == f.fact.fact_id for n in chooser.find(f.question))][:2 * repeats + 1]
    if len(asked) < 2 * repeats + 1:
        raise RuntimeError(f"fewer than {2 * repeats + 1} questions find their fact's note")  # not the path timed
    device = next(decoder.parameters()).device

    def answer(question: str) -> None:
        prompts = [notes.prompt(tokenizer, question)[0]]
        if contrast is not None:
            prompts.append(conversation_prompt(tokenizer, unnoted([{"role": "user", "content": question}])))
        ids, mask = left_padded_ids(tokenizer, prompts, device)
        processors = LogitsProcessorList([ContrastProcessor([0], [1], contrast, vocabulary(tokenizer))]
                                         if contrast is not None else [])
        with torch.no_grad():
            decoder.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             logits_processor=processors)

    answer(asked[0])  # warm-up (and the index)
    lookups, answers = [], []
    for i in range(repeats):
        start = time.perf_counter()
        notes.find(asked[1 + 2 * i])
        lookups.append(time.perf_counter() - start)
        start = time.perf_counter()
        answer(asked[2 + 2 * i])
        answers.append(time.perf_counter() - start)
    over = f"BM25 over {LEDGER_FACTS:,} facts, at most {notes.per_question} notes" + \
        (f", floor {min_match:g}" if min_match else "")
    return [_summary(f"notes lookup ({over})", lookups, 0.0),
            _summary(f"query, {new_tokens} tokens: {name} ({over})", answers, 0.0)]


LEDGER_FACTS = 1000


def _explained_query(lm, answer, repeats: int, new_tokens: int) -> Timing:
    """One question as `"explain": true` answers it: every read recorded, then attributed over a ledger of
    LEDGER_FACTS facts of top_t rows each (random rows given random values, so every read counts)."""
    from model.provenance import RowWriters, contributions_of

    gen = torch.Generator().manual_seed(0)
    ledger, top_t = RowWriters(), SparseConfig().top_t
    with torch.no_grad():
        for layer, memory in lm.memories.items():
            rows = torch.randint(memory.num_slots, (LEDGER_FACTS, top_t), generator=gen)
            memory.values[rows.flatten().unique()] = torch.randn(
                len(rows.flatten().unique()), memory.values.shape[1], generator=gen).to(memory.values)
            ledger.update({f"fact-{i}": {layer: rows[i]} for i in range(LEDGER_FACTS)})

    def explained() -> None:
        with lm.reads() as reads:
            answer(lm.model, 1)
        ledger.attribute(contributions_of(lm, reads))

    explained()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        explained()
        times.append(time.perf_counter() - start)
    return _summary(f"query, {new_tokens} tokens: with memory, explained ({LEDGER_FACTS:,} facts in the ledger)",
                    times, 0.0)


def ratios(timings: list[Timing]) -> dict[str, float]:
    by = {t.name: t.median_ms for t in timings}
    out = {}
    sparse, full = by.get("train step: sparse"), by.get("train step: full")
    if sparse and full:
        out["sparse step / full-finetuning step"] = sparse / full
    if sparse and by.get("train step: lora"):
        out["sparse step / LoRA step"] = sparse / by["train step: lora"]
    if sparse and by.get("train step: sparse (full forward)"):
        out["sparse step / same step through the whole model"] = sparse / by["train step: sparse (full forward)"]
    explained = next((t for name, t in by.items() if ": with memory, explained" in name), None)
    plain = next((t for name, t in by.items() if name.endswith("tokens: with memory")), None)
    if explained and plain:
        out["explained query / query (one question)"] = explained / plain
    noted = next((t for name, t in by.items() if ": with memory and notes (" in name), None)
    if noted and plain:
        out["query with notes / query (one question)"] = noted / plain
    contrasted = next((t for name, t in by.items() if ": with memory and notes, contrast" in name), None)
    if contrasted and noted:
        out["query with notes and contrast / with notes (one question)"] = contrasted / noted
    for name, t in by.items():  # each query shape: with memory over the base model
        if name.endswith(": with memory") and (plain := by.get(name.replace(": with memory", ": base model"))):
            shape = name.removesuffix(": with memory").removeprefix("query, ")
            out[f"query with memory / base model ({shape})"] = t / plain
    return out
