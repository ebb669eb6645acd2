"""The inference engine: answers from the newest memory, following the worker's deltas.

At start it loads the newest snapshot and replays later deltas; then a background thread blocks
on the deltas stream and applies each delta in version order under the replica's lock, which
generation also holds: no answer ever comes from a half-applied table. With SMFT_MEMORY_SCOPE=noted a
question that finds no note and names nothing a taught fact names is answered as version 0, the model
before any fact was taught.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from model.contrast import Contrast
from model.evaluation import generate_answers
from model.generation import Completion, SamplingParams, complete
from model.loading import load_tokenizer
from model.notes import Grounded, Note, Notes, unnoted
from model.prompting import conversation_prompt, last_user_turn
from model.provenance import Source, answer_contributions
from model.recasing import TaughtNames, typed_in_lower_case
from service.batcher import QueryBatcher
from service.errors import VersionWaitTimeout
from service.limits import GenerationGate, check_prompt
from worker.errors import NotReadyError
from worker.replica import MemoryReplica
from worker.settings import CommonSettings
from worker.store import RedisStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    version: int
    wait_ms: float
    generate_ms: float
    batch_size: int = 1  # questions answered in the same generation
    sources: list[Source] | None = None  # with explain: the facts whose rows the answer read most
    unattributed: float = 0.0  # with explain: the memory's share that no live fact accounts for
    notes: tuple[Note, ...] = ()  # the taught statements put before the question (SMFT_NOTES)
    read_memory: bool = True  # False: answered as version 0, out of the memory's scope (SMFT_MEMORY_SCOPE=noted)
    set_aside: tuple[Note, ...] = ()  # notes found but left out: the answer with them took nothing from them


class Engine:
    def __init__(self, settings: CommonSettings, store: RedisStore, batch_window_ms: float = 5.0,
                 max_batch: int = 8, max_generations: int = 32, recase_names: bool = True,
                 notes: float | None = None, scoped: bool = False, contrast: float | None = None,
                 grounding: bool = False) -> None:
        self.store = store
        self.gate = GenerationGate(max_generations)  # callers hold it around answer() and complete()
        self.replica = MemoryReplica(settings.model, settings.device, settings.snapshot_dir, self.store)
        # answers with notes decoded against their prompts without them, the notes' share amplified (model/contrast.py)
        self.contrast = Contrast(contrast) if contrast is not None and notes is not None else None
        self.batcher = QueryBatcher(self.replica, batch_window_ms, max_batch, self.contrast)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # last error of the follower thread, for /readyz
        self.model_spec = settings.model
        self.applied_at: float | None = None  # wall time this replica applied its current version
        self._tokenizer = None  # loaded first, so facts can be checked before the model is ready
        self.names = TaughtNames() if recase_names else None  # see model/recasing.py
        self.notes = Notes(min_match=notes) if notes is not None else None  # see model/notes.py
        # The memory answers only the questions the notes find a taught statement for or that name something a taught
        # fact names; the others are answered as version 0 (a table of zeros: the base model), so what was taught
        # cannot leak into them.
        self.scoped = scoped and self.notes is not None
        self.grounding = grounding  # an answer that took nothing from its notes is made again without them
        self._live_version = -1  # the version whose live facts `names` and `notes` hold
        self._live_retry_at = 0.0  # after Redis failed to give the texts: not before this (monotonic)
        self._live_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.replica.lm is not None

    def check_prompt(self, field: str, messages: list[dict[str, str]], max_new_tokens: int,
                     limit: int | None) -> None:
        """422 when the prompt these messages make is too long to answer (see limits.check_prompt)."""
        lm = self.replica.lm
        if lm is None:
            raise NotReadyError("model not loaded yet")
        prompt = conversation_prompt(lm.tokenizer, self._with_notes(messages)[0])  # as it will be answered
        tokens = len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        context = getattr(lm.model.config, "max_position_embeddings", None) or 2048
        check_prompt(field, tokens, max_new_tokens, context, limit)

    @property
    def version(self) -> int:
        return self.replica.version

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="delta-follower", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.batcher.close()
        with self._changed:
            self._changed.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    @property
    def tokenizer(self):
        """The model's tokenizer, or None while it is still loading."""
        return self.replica.lm.tokenizer if self.replica.lm is not None else self._tokenizer

    def _follow(self) -> None:
        """Load, catch up, then apply deltas as they are published, forever."""
        while not self._stop.is_set():
            try:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.model_spec)
                if self.replica.lm is None:
                    self.replica.load_snapshot()
                self._applied(self.replica.catch_up())
                entries = self.store.wait_for_deltas(self.replica.version, block_ms=1000)
                for version, data in entries:
                    if not self.replica.apply(version, data):
                        break
                    self._applied(1)
                if not entries and self.replica.follow_deployment():  # Redis flushed or replaced: no deltas come
                    self._applied(1)
                self.error = None
            except NotReadyError as exc:
                self.error = str(exc)
                self._stop.wait(1.0)
            except Exception as exc:  # Redis away, a bad file: report, retry, never die
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("delta follower: %s", self.error)
                self._stop.wait(1.0)

    def _applied(self, n: int) -> None:
        if n:
            self.applied_at = time.time()
            with self._changed:
                self._changed.notify_all()

    def wait_for_version(self, version: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.replica.version < version:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def _wait(self, min_version: int, wait_s: float) -> float:
        """Wait (bounded) until `min_version` is applied; returns the seconds waited."""
        start = time.perf_counter()
        if min_version > self.replica.version and not self.wait_for_version(min_version, wait_s):
            raise VersionWaitTimeout(f"memory version {min_version} not applied within {wait_s:g}s "
                               f"(this replica is at {self.replica.version})")
        if self.replica.lm is None:
            raise NotReadyError("model not loaded yet")
        return time.perf_counter() - start

    def _live_facts(self) -> None:
        """Bring the live facts' names and notes up to the applied version (texts read from Redis once, only for
        facts new since the last question that needed them). Redis away: what they hold so far, and no new try
        for a few seconds, so that questions do not each wait out Redis' timeout."""
        with self._live_lock:
            version = self.replica.version
            if version == self._live_version or time.monotonic() < self._live_retry_at:
                return
            read: dict[str, tuple[str, ...] | None] = {}

            def statements_of(ids):  # what names and notes lack is mostly the same facts: one read for both
                missing = [i for i in ids if i not in read]
                read.update(zip(missing, self.store.fact_statements(missing) if missing else [], strict=True))
                return [read[i] for i in ids]

            try:
                live = self.replica.writers.live()
                if self.names is not None:
                    self.names.sync(live, lambda ids: [s[0] if s else None for s in statements_of(ids)])
                if self.notes is not None:
                    self.notes.sync(live, statements_of)
                self._live_version = version
            except Exception as exc:
                self._live_retry_at = time.monotonic() + 5.0
                log.warning("taught names and notes not refreshed: %s", exc)

    def _taught_names(self) -> TaughtNames | None:
        if self.names is not None:
            self._live_facts()
        return self.names

    def recased(self, question: str) -> str:
        """The question as the memory reads it (model/recasing.py): only a question typed all in lower case
        changes."""
        names = self._taught_names() if typed_in_lower_case(question) else None
        return names.recase(question) if names is not None else question

    def recased_chat(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with its last user turn recased, as `recased` does a question."""
        last = last_user_turn(messages)
        names = self._taught_names() if last is not None and typed_in_lower_case(messages[last]["content"]) else None
        return names.recase_chat(messages) if names is not None else messages

    def _with_notes(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], tuple[Note, ...]]:
        """The chat with the notes its last user turn finds (model/notes.py), and those notes; as asked when
        notes are off or none is found."""
        if self.notes is None:
            return messages, ()
        self._live_facts()
        noted, notes = self.notes.chat(messages)
        return noted, tuple(notes)

    def _prompt(self, question: str) -> tuple[str | None, str | None, tuple[Note, ...]]:
        """The text before the answer to `question` where notes are found for it (None: the plain chat prompt),
        the same without the notes to decode against (None: no contrast), and the notes."""
        messages, notes = self._with_notes([{"role": "user", "content": question}])
        if not notes:
            return None, None, ()
        assert self.replica.lm is not None
        return (conversation_prompt(self.replica.lm.tokenizer, messages),
                self._unnoted([{"role": "user", "content": question}]), notes)

    def _unnoted(self, messages: list[dict[str, str]]) -> str | None:
        """With a contrast, the chat as `_with_notes` puts it when it found notes, less the notes, in the template."""
        if self.contrast is None:
            return None
        assert self.replica.lm is not None
        return conversation_prompt(self.replica.lm.tokenizer, unnoted(messages))

    def _grounded(self, question: str, notes: Sequence[Note]) -> Grounded | None:
        """With SMFT_NOTE_GROUNDING and notes: what says whether an answer took from them (model/notes.py)."""
        return self.notes.grounding(question, notes) if self.grounding and notes and self.notes is not None else None

    def _reads_memory(self, question: str, notes: Sequence[Note]) -> bool:
        """Whether the question, for which the notes found `notes`, is answered by the memory (see `scoped`)."""
        return not self.scoped or (self.notes is not None and self.notes.in_scope(question, notes))

    def answer(self, question: str, max_new_tokens: int, min_version: int = -1, wait_s: float = 0.0) -> Answer:
        waited = self._wait(min_version, wait_s)
        question = self.recased(question)
        prompt, plain, notes = self._prompt(question)
        use_memory = self._reads_memory(question, notes)
        done = self.batcher.answer(question, max_new_tokens, prompt, use_memory, plain, self._grounded(question, notes))
        return Answer(done.text, done.version, waited * 1000, done.generate_s * 1000, done.batch_size,
                      notes=() if done.set_aside else notes, read_memory=use_memory,
                      set_aside=notes if done.set_aside else ())

    def explain(self, question: str, max_new_tokens: int, min_version: int = -1, wait_s: float = 0.0,
                top: int = 5) -> Answer:
        """The same greedy answer as `answer`, with the taught facts whose rows it read most. Generated
        alone (not batched), since every read of this one answer is recorded."""
        waited = self._wait(min_version, wait_s)
        question = self.recased(question)
        prompt, plain, notes = self._prompt(question)
        use_memory = self._reads_memory(question, notes)
        set_aside: tuple[Note, ...] = ()
        start = time.perf_counter()
        with self.replica.lock:
            lm = self.replica.lm
            assert lm is not None
            if use_memory:
                text, contributions = answer_contributions(lm, question, max_new_tokens, prompt, plain, self.contrast)
                if (grounded := self._grounded(question, notes)) is not None and not grounded(text):
                    text, contributions = answer_contributions(lm, question, max_new_tokens)
                    notes, set_aside = (), notes
                sources, unattributed = self.replica.writers.attribute(contributions, top)
            else:  # out of the memory's scope: no taught fact's rows are read
                text = generate_answers(lm, [question], max_new_tokens, use_memory=[False])[0]
                sources, unattributed = [], 0.0
            version = self.replica.version
        return Answer(text, version, waited * 1000, (time.perf_counter() - start) * 1000, 1, sources, unattributed,
                      notes, use_memory, set_aside)

    def complete(self, messages: list[dict[str, str]], params: SamplingParams,
                 on_text: Callable[[str], None] | None = None,
                 cancelled: threading.Event | None = None) -> tuple[Completion, int]:
        """A chat completion from the newest applied memory; returns it with the version used."""
        lm = self.replica.lm
        if lm is None:
            raise NotReadyError("model not loaded yet")
        # before the lock: recasing and notes may read Redis
        recased = self.recased_chat(messages)
        noted, notes = self._with_notes(recased)
        last = last_user_turn(recased)
        use_memory = self._reads_memory(recased[last]["content"] if last is not None else "", notes)
        prompt = conversation_prompt(lm.tokenizer, noted)
        plain = self._unnoted(recased) if notes else None
        grounded = self._grounded(recased[last]["content"], notes) if last is not None else None
        as_asked = conversation_prompt(lm.tokenizer, recased) if grounded is not None else None
        with self.replica.lock:
            return (complete(lm, prompt, params, on_text, cancelled, plain, self.contrast, use_memory, grounded,
                             as_asked), self.replica.version)
