"""Answer questions from the newest memory, optionally after a given version or fact."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, HTTPException, status

from service.deps import EngineDep, SettingsDep, StoreDep
from service.engine import Answer
from service.limits import check_text
from service.schemas import Explanation, NoteUsed, QueryRequest, QueryResponse, Source, Timings
from worker.store import UNAVAILABLE, FactStatus, RedisStore

router = APIRouter(prefix="/v1", tags=["query"])


async def _version_of_fact(store: RedisStore, fact_id: str, wait_s: float) -> int:
    """The version that taught `fact_id`, waiting (bounded) for the worker to learn it."""
    deadline = time.monotonic() + wait_s
    while True:
        record = await asyncio.to_thread(store.fact_record, fact_id)  # never block the event loop on Redis
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"after_fact: unknown fact id {fact_id!r}")
        if record["status"] == FactStatus.learned.value:
            return int(record["version"])
        if record["status"] == FactStatus.failed.value:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"after_fact: fact {fact_id} failed and will not be learned: {record.get('reason')}")
        if time.monotonic() >= deadline:
            raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                                f"after_fact: fact {fact_id} is still {record['status']} after {wait_s:g}s")
        await asyncio.sleep(0.05)


@router.post("/query", response_model=QueryResponse)
async def query(req: QueryRequest, settings: SettingsDep, engine: EngineDep, store: StoreDep) -> QueryResponse:
    if req.max_new_tokens > settings.max_new_tokens:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"max_new_tokens: {req.max_new_tokens} exceeds the limit of {settings.max_new_tokens}")
    check_text("question", req.question, settings.max_text_chars)
    wait_s = min(req.wait_s, settings.max_wait_s)
    start = time.perf_counter()
    min_version = req.min_version if req.min_version is not None else -1
    if req.after_fact is not None:
        min_version = max(min_version, await _version_of_fact(store, req.after_fact, wait_s))
    if min_version > engine.version:  # only a read-your-write needs Redis: the rest answer while it is away
        published = await asyncio.to_thread(store.published_version)
        if min_version > published:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"min_version: {min_version} is not published yet (newest is {published})")
    await asyncio.to_thread(engine.check_prompt, "question", [{"role": "user", "content": req.question}],
                            req.max_new_tokens, settings.max_prompt_tokens)
    left = max(0.0, wait_s - (time.perf_counter() - start))
    # Not ready (503), busy (503) and a version not reached in time (504) are answered by service/errors.py.
    with engine.gate.held():
        answer = await asyncio.to_thread(engine.explain if req.explain else engine.answer, req.question,
                                         req.max_new_tokens, min_version, left)
    explanation = await _explanation(store, answer) if req.explain else None
    total = (time.perf_counter() - start) * 1000
    return QueryResponse(answer=answer.text, memory_version=answer.version,
                         timings=Timings(wait_ms=total - answer.generate_ms, generate_ms=answer.generate_ms,
                                         total_ms=total, batch_size=answer.batch_size),
                         explanation=explanation, notes=[NoteUsed(id=n.fact_id, text=n.text) for n in answer.notes],
                         read_memory=answer.read_memory,
                         notes_set_aside=[NoteUsed(id=n.fact_id, text=n.text) for n in answer.set_aside])


async def _explanation(store: RedisStore, answer: Answer) -> Explanation:
    """The answer's sources with their statements; without them (text null) while Redis is away."""
    sources = answer.sources or []
    try:
        texts = await asyncio.to_thread(store.fact_texts, [s.fact_id for s in sources])
    except UNAVAILABLE:
        texts = [None] * len(sources)
    return Explanation(sources=[Source(id=s.fact_id, text=text, share=s.share, rows_read=s.rows_read)
                                for s, text in zip(sources, texts, strict=True)],
                       unattributed=answer.unattributed)
