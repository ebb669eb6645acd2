"""Dynamic batching of queries: questions that arrive together are answered in one generation.

One thread owns generation. It takes the first waiting question, gathers whatever else arrives
within a short window (up to `max_batch`), and answers them all in one batched greedy pass under
the replica's lock, so every answer in a batch comes from the same memory version. Under load,
questions that arrive while a batch runs form the next batch, so throughput grows with
concurrency while a lone question waits at most the window.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from model.contrast import Contrast
from model.evaluation import again_without_notes, generate_answers
from model.notes import Grounded
from model.prompting import as_written, chat_prompt
from worker.errors import NotReadyError
from worker.replica import MemoryReplica


@dataclass
class _Request:
    question: str
    max_new_tokens: int
    prompt: str | None = None  # the text before the answer, where it is not the question alone (notes)
    unnoted: str | None = None  # with notes and SMFT_NOTE_CONTRAST: the prompt without them (model/contrast.py)
    use_memory: bool = True  # False: answered as version 0 (a question out of the memory's scope)
    grounded: Grounded | None = None  # with notes: whether the answer took from them (model/notes.py)
    done: threading.Event = field(default_factory=threading.Event)
    text: str = ""
    version: int = -1
    generate_s: float = 0.0
    batch_size: int = 0
    set_aside: bool = False  # the answer with notes took nothing from them: answered again without them
    error: BaseException | None = None


class QueryBatcher:
    def __init__(self, replica: MemoryReplica, window_ms: float = 5.0, max_batch: int = 8,
                 contrast: Contrast | None = None) -> None:
        self.replica, self.window_s, self.max_batch = replica, window_ms / 1000, max_batch
        self.contrast = contrast  # answers with notes decoded against their `unnoted` prompts (model/contrast.py)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="query-batcher", daemon=True)
        self._thread.start()

    def answer(self, question: str, max_new_tokens: int, prompt: str | None = None,
               use_memory: bool = True, unnoted: str | None = None,
               grounded: Grounded | None = None) -> _Request:
        """Block until the question is answered; returns the filled request (text, version, timings). `prompt`:
        the whole text before the answer (default: the question in the chat template); `use_memory`: False
        answers it as version 0 (in the same batch as the others); `unnoted`: the prompt without its notes,
        to decode against with the batcher's contrast; `grounded`: an answer it rejects is made again from the
        question alone, in one more generation for the batch."""
        request = _Request(question, max_new_tokens, prompt, unnoted, use_memory, grounded)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _gather(self, first: _Request) -> list[_Request] | None:
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # let the loop see the stop after this batch
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = self._gather(first)
            start = time.perf_counter()
            try:
                with self.replica.lock:
                    if self.replica.lm is None:
                        raise NotReadyError("model not loaded yet")
                    version = self.replica.version
                    tokenizer = self.replica.lm.tokenizer
                    prompts = [r.prompt or chat_prompt(tokenizer, r.question) for r in batch]
                    limits, use_memory = [r.max_new_tokens for r in batch], [r.use_memory for r in batch]
                    texts = generate_answers(self.replica.lm, prompts, limits, prompt=as_written, use_memory=use_memory,
                                             unnoted=[r.unnoted for r in batch], contrast=self.contrast)
                    again = again_without_notes(self.replica.lm, texts, [r.question for r in batch],
                                                [r.grounded for r in batch], limits, use_memory)
                for request, text, other in zip(batch, texts, again, strict=True):
                    request.text = text if other is None else other
                    request.version, request.set_aside = version, other is not None
            except BaseException as exc:  # every waiter gets the error; the loop goes on
                for request in batch:
                    request.error = exc
            elapsed = time.perf_counter() - start
            for request in batch:
                request.generate_s, request.batch_size = elapsed, len(batch)
                request.done.set()
