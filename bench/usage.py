"""How the service learns from what people post, and answers however they ask (`smft bench usage`).

Generated facts are taught exactly as the worker teaches them (`worker/teaching.py`: its batches of
SMFT_BATCH_FACTS, the model's own questions, its steps), in the forms people post: a statement
with paraphrases, a bare statement, a paragraph holding several facts (posted as one fact, and
posted as a document, which the API splits into statements). Each fact is then asked the
ways people ask: its question as written, lower-cased without the question mark, reworded,
reversed (the answer given, the subject asked for), through the chat template with a system
prompt, and as the third turn of a conversation; plain questions go the way `POST /v1/query`
answers them, chats the way `/v1/chat/completions` does, recased as the API recases them
(SMFT_RECASE_NAMES, `model/recasing.py`) and with the notes it puts before them (SMFT_NOTES,
`model/notes.py`). Corrections contradict what version 0 answers correctly (capitals from the
retention probe). Every cell is the share of facts whose answer the reply contains, beside the share
of the retention probe still answered.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.facts import EvalFact, fictional_name
from bench.report import write_json
from bench.retrieval import Retriever, in_scope_flags, noted_answers
from model.documents import split_statements
from model.evaluation import contains_answer
from model.facts import Fact
from model.generation import SamplingParams, complete
from model.learners import SparseMemoryLearner
from model.lm import MemoryLM
from model.probe import ProbeQuestion
from model.prompting import conversation_prompt, last_user_turn
from model.provenance import RowWriters, answer_contributions
from model.recasing import TaughtNames
from model.statistics import SlotStats
from worker.settings import WorkerSettings
from worker.teaching import teach_facts

log = logging.getLogger(__name__)

FORMS = ("statement + paraphrases", "bare statement", "paragraph", "paragraph as a document")
ASKS = ("question", "lower case, no ?", "reworded", "reversed", "chat with system prompt", "third turn of a chat")
FACTS_PER_PARAGRAPH = 4
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and accurately."
CHAT_OPENING = ({"role": "user", "content": "Hi! Could you help me with a few questions?"},
                {"role": "assistant", "content": "Of course! What would you like to know?"})
MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class Correction:
    question: str  # a probe question version 0 answers correctly
    old: str  # its answer
    statement: str  # what is taught instead
    new: str


@dataclass(frozen=True)
class UsageResult:
    name: str  # a form, or "corrections"
    facts: int
    answered: dict[str, float]  # per way of asking (forms), or new / old gone / neighbours kept (corrections)
    probe_answered: float  # share of the retention probe still answered
    batches: int
    steps: int
    seconds: float
    # forms: the share of facts whose question's explanation (`"explain": true`) names, as its largest
    # source, the post that taught the fact; None in results saved before it was measured
    explained: float | None = None
    # per way of asking, each miss as {"asked", "expected", "reply"}: what to read when a cell is low
    misses: dict[str, list[dict]] | None = None


def posts(facts: Sequence[EvalFact], form: str) -> list[Fact]:
    """What a person posts to teach `facts` in one of FORMS."""
    if form == FORMS[0]:
        return [f.fact for f in facts]
    if form == FORMS[1]:
        return [Fact(f.fact.text, fact_id=f.fact.fact_id) for f in facts]
    if form in FORMS[2:]:
        groups = [facts[i:i + FACTS_PER_PARAGRAPH] for i in range(0, len(facts), FACTS_PER_PARAGRAPH)]
        paragraphs = [" ".join(f.fact.text for f in group) for group in groups]
        if form == FORMS[2]:  # posted to /v1/facts: one fact
            return [Fact(text, fact_id=f"paragraph-{i}") for i, text in enumerate(paragraphs)]
        # posted to /v1/documents: split into statements as the API splits them
        return [Fact(s, fact_id=f"paragraph-{i}.{j}") for i, text in enumerate(paragraphs)
                for j, s in enumerate(split_statements(text))]
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def asked(fact: EvalFact, how: str) -> tuple[str | list[dict[str, str]], str]:
    """(the question, or the chat's messages, asked) and the answer the reply must contain."""
    if how == "question":
        return fact.question, fact.answer
    if how == "lower case, no ?":
        return fact.question.lower().rstrip("?"), fact.answer
    if how == "reworded":
        return fact.reworded, fact.answer
    if how == "reversed":
        return fact.reversed, fact.subject
    if how == "chat with system prompt":
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": fact.question}], fact.answer
    if how == "third turn of a chat":
        return [*CHAT_OPENING, {"role": "user", "content": fact.question}], fact.answer
    raise ValueError(f"how must be one of {ASKS}, got {how!r}")


def replies(lm: MemoryLM, asks: Sequence[str | list[dict[str, str]]], names: TaughtNames | None = None,
            retriever: Retriever | None = None, scoped: bool = False) -> list[str]:
    """Plain questions in one batch, as /v1/query answers them; chats one by one, as chat completions do;
    with `names` (the live facts'), recased first as the API does; with `retriever`, the notes it finds put
    in front (retrieval instead of the memory); `scoped`: one out of the memory's scope (no note found,
    nothing taught named) answered as version 0 (as SMFT_MEMORY_SCOPE=noted)."""
    if names is not None:
        asks = [names.recase(a) if isinstance(a, str) else names.recase_chat(a) for a in asks]
    plain = [i for i, a in enumerate(asks) if isinstance(a, str)]
    out = [""] * len(asks)
    questions = [asks[i] for i in plain]
    for i, text in zip(plain, noted_answers(lm, questions, MAX_NEW_TOKENS, retriever, scoped), strict=True):
        out[i] = text
    params = SamplingParams(MAX_NEW_TOKENS)
    for i, chat in enumerate(asks):
        if isinstance(chat, str):
            continue
        last = chat[last_user_turn(chat)]["content"]
        noted = retriever.chat(chat) if retriever is not None else chat
        out[i] = complete(lm, conversation_prompt(lm.tokenizer, noted), params,
                          unnoted=retriever and retriever.unnoted_chat(lm.tokenizer, chat),
                          contrast=retriever and retriever.contrast,
                          use_memory=in_scope_flags(retriever, scoped, [last]) != [False],
                          grounded=retriever and retriever.grounded(last),
                          plain=conversation_prompt(lm.tokenizer, chat)).text
    return out


def probe_answered(lm: MemoryLM, probe: Sequence[ProbeQuestion], retriever: Retriever | None = None,
                   scoped: bool = False) -> float:
    questions = [q.question for q in probe]
    answers = noted_answers(lm, questions, 24, retriever, scoped)
    return sum(q.correct(a) for q, a in zip(probe, answers, strict=True)) / max(len(probe), 1)


def corrections(probe: Sequence[ProbeQuestion], n: int, seed: int = 0) -> tuple[list[Correction], list[ProbeQuestion]]:
    """n corrections of capitals version 0 knows (a fictional city each), and the other capitals as the
    neighbours that must keep their answers."""
    capitals = [q for q in probe if q.question.startswith("What is the capital of ")]
    rng = random.Random(seed)
    chosen = rng.sample(capitals, min(n, len(capitals)))
    out = []
    for q in chosen:
        country = q.question.removeprefix("What is the capital of ").rstrip("?")
        new = fictional_name(rng)
        out.append(Correction(q.question, q.answer, f"The capital of {country} is {new}.", new))
    return out, [q for q in capitals if q not in chosen]


def _teach(lm: MemoryLM, stats: SlotStats, facts: Sequence[Fact], settings: WorkerSettings,
           ledger: RowWriters | None = None) -> tuple[int, int, float]:
    """The facts in the worker's batches, on `lm`, recording in `ledger` which fact wrote which row, as
    every replica does; returns (batches, steps, seconds)."""
    learner = SparseMemoryLearner(lm, stats, settings.sparse_config())
    batches = steps = 0
    seconds = 0.0
    for start in range(0, len(facts), settings.batch_facts):
        report = teach_facts(lm, learner, facts[start:start + settings.batch_facts], settings)
        learner.take_touched()  # the worker publishes here; the undo record is not needed
        writes = learner.take_writes()
        if ledger is not None:
            ledger.update(writes)
        batches, steps, seconds = batches + 1, steps + report.steps, seconds + report.seconds
    return batches, steps, seconds


def explained_by_its_post(lm: MemoryLM, ledger: RowWriters, facts: Sequence[EvalFact], taught: Sequence[Fact],
                          retriever: Retriever | None = None, scoped: bool = False) -> float:
    """The share of facts whose question's largest source (as `"explain": true` reports it, with the notes
    `retriever` finds before the question) is the post holding the fact's statement; `scoped`: none for a
    question out of the memory's scope (the memory is not read)."""
    hits = 0
    for fact in facts:
        if in_scope_flags(retriever, scoped, [fact.question]) == [False]:
            continue
        post = next((p.fact_id for p in taught if fact.fact.text in p.text), None)
        prompt = retriever.prompt(lm.tokenizer, fact.question) if retriever is not None else None
        plain = retriever.unnoted_prompt(lm.tokenizer, fact.question) if retriever is not None else None
        contrast = retriever.contrast if retriever is not None else None
        text, contributions = answer_contributions(lm, fact.question, MAX_NEW_TOKENS, prompt, plain, contrast)
        if (grounded := retriever and retriever.grounded(fact.question)) is not None and not grounded(text):
            contributions = answer_contributions(lm, fact.question, MAX_NEW_TOKENS)[1]  # as the API explains it
        sources, _ = ledger.attribute(contributions, top=1)
        hits += bool(sources) and sources[0].fact_id == post
    return hits / len(facts)


def taught_names(taught: Sequence[Fact]) -> TaughtNames:
    names = TaughtNames()
    for fact in taught:
        names.add(fact.fact_id, fact.text)
    return names


def run_form(v0: MemoryLM, stats: SlotStats, settings: WorkerSettings, facts: Sequence[EvalFact], form: str,
             probe: Sequence[ProbeQuestion], recase: bool = True, retriever: Retriever | None = None,
             teach: bool = True, scoped: bool = False) -> UsageResult:
    """One form taught as the worker teaches it; with `retriever` (empty) also indexed by it, or with `teach`
    False indexed by it instead; `scoped`: the memory read only for the questions in its scope (see replies)."""
    taught = posts(facts, form)
    if retriever is not None:
        retriever.add(taught)
    if teach or retriever is None:
        lm, ledger = copy.deepcopy(v0), RowWriters()
        batches, steps, seconds = _teach(lm, stats, taught, settings, ledger)
    else:
        lm, ledger, (batches, steps, seconds) = v0, None, (0, 0, 0.0)
    names = taught_names(taught) if recase else None
    answered, misses = {}, {}
    for how in ASKS:
        asks, golds = zip(*(asked(f, how) for f in facts), strict=True)
        got = replies(lm, asks, names, retriever, scoped)
        hits = [contains_answer(r, g) for r, g in zip(got, golds, strict=True)]
        answered[how] = sum(hits) / len(facts)
        misses[how] = [{"asked": a, "expected": g, "reply": r}
                       for a, g, r, hit in zip(asks, golds, got, hits, strict=True) if not hit]
    return UsageResult(form, len(facts), answered, probe_answered(lm, probe, retriever, scoped), batches, steps,
                       seconds,
                       explained_by_its_post(lm, ledger, facts, taught, retriever, scoped) if ledger is not None
                       else None, misses)


def run_corrections(v0: MemoryLM, stats: SlotStats, settings: WorkerSettings, fixes: Sequence[Correction],
                    neighbours: Sequence[ProbeQuestion], probe: Sequence[ProbeQuestion], recase: bool = True,
                    retriever: Retriever | None = None, teach: bool = True, scoped: bool = False) -> UsageResult:
    taught = [Fact(c.statement, fact_id=f"fix-{i}") for i, c in enumerate(fixes)]
    if retriever is not None:
        retriever.add(taught)
    if teach or retriever is None:
        lm = copy.deepcopy(v0)
        batches, steps, seconds = _teach(lm, stats, taught, settings)
    else:
        lm, (batches, steps, seconds) = v0, (0, 0, 0.0)
    got = replies(lm, [c.question for c in fixes], taught_names(taught) if recase else None, retriever, scoped)
    asked_neighbours = [q.question for q in neighbours]
    kept = noted_answers(lm, asked_neighbours, 24, retriever, scoped)
    new_in = [contains_answer(r, c.new) for r, c in zip(got, fixes, strict=True)]
    kept_right = [q.correct(a) for q, a in zip(neighbours, kept, strict=True)]
    answered = {
        "new answer": sum(new_in) / len(fixes),
        "old answer gone": sum(not contains_answer(r, c.old) for r, c in zip(got, fixes, strict=True)) / len(fixes),
        "neighbours kept": sum(kept_right) / max(len(neighbours), 1),
    }
    misses = {
        "new answer": [{"asked": c.question, "expected": c.new, "reply": r}
                       for r, c, hit in zip(got, fixes, new_in, strict=True) if not hit],
        "neighbours kept": [{"asked": q.question, "expected": q.answer, "reply": a}
                            for q, a, hit in zip(neighbours, kept, kept_right, strict=True) if not hit],
    }
    return UsageResult("corrections", len(fixes), answered, probe_answered(lm, probe, retriever, scoped), batches,
                       steps, seconds, misses=misses)


def run_usage(v0: MemoryLM, stats: SlotStats, settings: WorkerSettings, facts: Sequence[EvalFact],
              fixes: Sequence[Correction], neighbours: Sequence[ProbeQuestion], probe: Sequence[ProbeQuestion],
              progress: Path | None = None, run_key: dict | None = None, forms: Sequence[str] = FORMS,
              on_result: Callable[[UsageResult], None] | None = None, recase: bool = True,
              retrieval: Callable[[], Retriever] | None = None, teach: bool = False,
              scoped: bool = False) -> list[UsageResult]:
    """Every form, then the corrections, each from version 0. With `progress`, each result is saved there
    as it is measured, and one already there for the same `run_key` (settings, facts, seed) is read back
    instead of measured again, so a stopped run resumes. `recase`: as the API's SMFT_RECASE_NAMES. With
    `retrieval` (a new, empty Retriever per call), each form's posts are indexed, and taught too only with
    `teach` (the memory and notes together, as the service with SMFT_NOTES answers); `scoped` then reads the
    memory only for questions that find a note (as SMFT_MEMORY_SCOPE=noted)."""
    fresh = retrieval or (lambda: None)
    teach = teach or retrieval is None
    results = []
    jobs: list[tuple[str, Callable[[], UsageResult]]] = [
        (form, lambda form=form: run_form(v0, stats, settings, facts, form, probe, recase, fresh(), teach, scoped))
        for form in forms]
    if fixes:
        jobs.append(("corrections", lambda: run_corrections(v0, stats, settings, fixes, neighbours, probe, recase,
                                                                     fresh(), teach, scoped)))
    for name, measure in jobs:
        saved = progress / f"{name.replace(' ', '_').replace('+', 'and')}.json" if progress else None
        stored = json.loads(saved.read_text()) if saved is not None and saved.exists() else {}
        if stored.get("run") == run_key and "result" in stored:
            result = UsageResult(**stored["result"])
            log.info("%s: read from %s", name, saved)
        else:
            result = measure()
            if saved is not None:
                write_json(saved, {"run": run_key, "result": asdict(result)})
        results.append(result)
        if on_result:
            on_result(result)
    return results
