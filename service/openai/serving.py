"""Chat completions from the newest applied memory: request checks, the plain answer and the SSE stream.

The memory version is reported as `system_fingerprint` ("smft-v<version>").
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import HTTPException, status

from model.generation import Completion, SamplingParams
from service.engine import Engine
from service.limits import bad_input, check_text
from service.openai.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ModelCard,
    ModelList,
    StreamError,
    StreamErrorInfo,
    Usage,
)
from service.settings import ApiSettings
from worker.errors import NotReadyError

MAX_STOP, MAX_STOP_CHARS = 4, 64


def _usage(done: Completion) -> Usage:
    return Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
                 total_tokens=done.prompt_tokens + done.completion_tokens)


@dataclass(frozen=True)
class ChatRequest:
    """A checked request: what the engine is asked for."""

    messages: list[dict[str, str]]
    params: SamplingParams
    model: str
    stream: bool
    include_usage: bool


class OpenAIServing:
    """What /v1/models and /v1/chat/completions do, for one served model name."""

    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine, self.settings = engine, settings
        self.created = int(time.time())

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.settings.served_model, created=self.created)])

    def model(self, model_id: str) -> ModelCard:
        if model_id != self.settings.served_model:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"model: {model_id!r} does not exist; GET /v1/models "
                                                           f"lists {self.settings.served_model!r}")
        return ModelCard(id=model_id, created=self.created)

    def check(self, req: ChatCompletionRequest) -> ChatRequest:
        """The request as the engine takes it, or a 4xx that names what is wrong."""
        settings = self.settings
        if req.model != settings.served_model:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"model: {req.model!r} does not exist; this service "
                                                           f"serves {settings.served_model!r}")
        if len(req.messages) > settings.max_messages:
            raise bad_input("messages", f"{len(req.messages)} messages; at most {settings.max_messages} allowed")
        messages = []
        for i, m in enumerate(req.messages):
            text = m.text()
            check_text(f"messages[{i}].content", text, settings.max_text_chars)
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": text})
        stop = req.stop_strings()
        if len(stop) > MAX_STOP or any(not s or len(s) > MAX_STOP_CHARS for s in stop):
            raise bad_input("stop", f"at most {MAX_STOP} non-empty strings of at most {MAX_STOP_CHARS} characters")
        max_new = req.max_completion_tokens or req.max_tokens or min(128, settings.max_new_tokens)
        if max_new > settings.max_new_tokens:
            field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise bad_input(field, f"{max_new} exceeds the limit of {settings.max_new_tokens}")
        if not self.engine.loaded:
            raise NotReadyError("model not loaded yet")
        self.engine.check_prompt("messages", messages, max_new, settings.max_prompt_tokens)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return ChatRequest(messages, SamplingParams(max_new, req.temperature, req.top_p, stop, req.seed), req.model,
                           req.stream, include_usage)

    async def complete(self, chat: ChatRequest) -> ChatCompletion:
        with self.engine.gate.held():
            done, version = await asyncio.to_thread(self.engine.complete, chat.messages, chat.params)
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=chat.model,
            system_fingerprint=f"smft-v{version}",
            choices=[Choice(message=AssistantMessage(content=done.text), finish_reason=done.finish_reason)],
            usage=_usage(done))

    def stream(self, chat: ChatRequest) -> AsyncIterator[str]:
        """SSE chunks in OpenAI's format. Generation starts now, in its own thread, so that a busy replica
        answers 503 before the response begins; a client that goes away stops it. The response waits for
        text on the event loop, so a stream holds no thread of the server's pool (only its generation
        thread, and those are bounded by the generation gate). Call it from the event loop."""
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()
        result: dict = {}

        def put(text: str | None) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, text)
            except RuntimeError:  # the event loop is gone (shutdown): nobody is reading
                cancelled.set()

        def run() -> None:
            try:
                result["done"], result["version"] = self.engine.complete(chat.messages, chat.params, put, cancelled)
            except Exception as exc:
                result["error"] = exc
            finally:
                self.engine.gate.leave()  # entered by the caller, before any byte was sent
                put(None)

        def chunk(choices: list[ChunkChoice], **extra) -> str:
            body = ChatCompletionChunk(id=completion_id, created=created, model=chat.model, choices=choices, **extra)
            return _sse(body.model_dump_json())

        self.engine.gate.enter()  # raises Overloaded (503) now, while a status can still be sent
        threading.Thread(target=run, name=f"stream-{completion_id[-6:]}", daemon=True).start()
        return self._chunks(chat, pieces, cancelled, result, chunk)

    @staticmethod
    async def _chunks(chat: ChatRequest, pieces: asyncio.Queue[str | None], cancelled: threading.Event,
                      result: dict, chunk: Callable[..., str]) -> AsyncIterator[str]:
        try:
            yield chunk([ChunkChoice(delta=DeltaMessage(role="assistant", content=""))])
            while (text := await pieces.get()) is not None:
                yield chunk([ChunkChoice(delta=DeltaMessage(content=text))])
            if "error" in result:
                error = result["error"]
                yield _sse(StreamError(error=StreamErrorInfo(message=f"{type(error).__name__}: {error}"))
                           .model_dump_json())
            else:
                done, fingerprint = result["done"], f"smft-v{result['version']}"
                yield chunk([ChunkChoice(delta=DeltaMessage(), finish_reason=done.finish_reason)],
                            system_fingerprint=fingerprint)
                if chat.include_usage:
                    yield chunk([], usage=_usage(done), system_fingerprint=fingerprint)
            yield "data: [DONE]\n\n"
        finally:
            cancelled.set()


def _sse(data: str) -> str:
    return f"data: {data}\n\n"
