"""OpenAI-compatible endpoints: /v1/models and /v1/chat/completions (plain and streamed as SSE).

Answers come from the newest applied memory, like /v1/query; the memory version is reported as
`system_fingerprint` ("smft-v<version>") and, for plain responses, in the X-Memory-Version header.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import StreamingResponse

from model.generation import SamplingParams
from service.deps import EngineDep, SettingsDep
from service.engine import Engine
from service.limits import bad_input, check_text
from service.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    Usage,
)
from service.settings import ApiSettings
from worker.replica import NotReadyError

router = APIRouter(prefix="/v1", tags=["openai"])
STARTED = int(time.time())
MAX_STOP, MAX_STOP_CHARS = 4, 64


@router.get("/models", response_model=ModelList)
def list_models(settings: SettingsDep) -> ModelList:
    return ModelList(data=[ModelCard(id=settings.served_model, created=STARTED)])


@router.get("/models/{model_id}", response_model=ModelCard)
def get_model(model_id: str, settings: SettingsDep) -> ModelCard:
    if model_id != settings.served_model:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model: {model_id!r} does not exist; GET /v1/models lists "
                                                       f"{settings.served_model!r}")
    return ModelCard(id=model_id, created=STARTED)


def _checked(req: ChatCompletionRequest, settings: ApiSettings) -> tuple[list[dict[str, str]], SamplingParams]:
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
    return messages, SamplingParams(max_new, req.temperature, req.top_p, stop, req.seed)


def _not_ready(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"not ready: {exc}", headers={"Retry-After": "5"})


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {}}, "description": "with stream=true: SSE chunks"}})
async def chat_completions(req: ChatCompletionRequest, settings: SettingsDep, engine: EngineDep,
                           response: Response):
    messages, params = _checked(req, settings)
    if not engine.loaded:
        raise _not_ready(NotReadyError("model not loaded yet"))
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        chunks = _stream(engine, messages, params, completion_id, created, req.model, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        done, version = await asyncio.to_thread(engine.complete, messages, params)
    except NotReadyError as exc:
        raise _not_ready(exc) from exc
    response.headers["X-Memory-Version"] = str(version)
    return ChatCompletion(
        id=completion_id, created=created, model=req.model, system_fingerprint=f"smft-v{version}",
        choices=[Choice(message=AssistantMessage(content=done.text), finish_reason=done.finish_reason)],
        usage=Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
                    total_tokens=done.prompt_tokens + done.completion_tokens),
    )


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _stream(engine: Engine, messages: list[dict[str, str]], params: SamplingParams, completion_id: str,
            created: int, model: str, include_usage: bool) -> Iterator[str]:
    """SSE chunks in OpenAI's format. Generation runs in its own thread; a client that goes away stops it."""
    pieces: queue.Queue[str | None] = queue.Queue()
    cancelled = threading.Event()
    result: dict = {}

    def run() -> None:
        try:
            result["done"], result["version"] = engine.complete(messages, params, pieces.put, cancelled)
        except Exception as exc:
            result["error"] = exc
        finally:
            pieces.put(None)

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

    threading.Thread(target=run, name=f"stream-{completion_id[-6:]}", daemon=True).start()
    try:
        yield _sse(chunk({"role": "assistant", "content": ""}))
        while (text := pieces.get()) is not None:
            yield _sse(chunk({"content": text}))
        if "error" in result:  # headers are sent: the error goes in the stream, as OpenAI does
            yield _sse({"error": {"message": f"{type(result['error']).__name__}: {result['error']}",
                                  "type": "server_error"}})
        else:
            done, version = result["done"], result["version"]
            fingerprint = f"smft-v{version}"
            yield _sse(chunk({}, done.finish_reason, system_fingerprint=fingerprint))
            if include_usage:
                usage = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                         "total_tokens": done.prompt_tokens + done.completion_tokens}
                yield _sse({**chunk({}), "choices": [], "usage": usage, "system_fingerprint": fingerprint})
        yield "data: [DONE]\n\n"
    finally:
        cancelled.set()
