"""Teach facts and follow their status."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, HTTPException, Request, status

from model.facts import Fact
from service.deps import EngineDep, RateLimiterDep, SettingsDep, StoreDep, WriteAccess
from service.engine import Engine
from service.intake import accept
from service.limits import bad_input, check_text
from service.schemas import FactAccepted, FactCreate, FactMemory, FactPublic, FactsAccepted, SharedRows, UndoAccepted
from service.settings import ApiSettings
from worker.store import RedisStore

router = APIRouter(prefix="/v1/facts", tags=["facts"])
log = logging.getLogger(__name__)


def _validate(item: FactCreate, where: str, settings: ApiSettings) -> Fact:
    """The domain fact, or a 422 that names the offending field."""

    def fail(field: str, why: str) -> HTTPException:
        return bad_input(f"{where}.{field}", why)

    texts = {"text": item.text, "question": item.question, "answer": item.answer}
    texts.update({f"paraphrases[{i}]": p for i, p in enumerate(item.paraphrases)})
    for field, value in texts.items():
        if value is not None:
            check_text(f"{where}.{field}", value, settings.max_text_chars)
    if len(item.paraphrases) > settings.max_paraphrases:
        raise fail("paraphrases", f"has {len(item.paraphrases)} items; at most {settings.max_paraphrases} allowed")
    if (item.question is None) != (item.answer is None):
        raise fail("answer" if item.answer is None else "question", "question and answer must be given together")
    if item.client_id is not None and not item.client_id.strip():
        raise fail("client_id", "must not be blank")
    return Fact(item.text, tuple(item.paraphrases), item.question, item.answer)


def _check_replaces(store: RedisStore, items: list[FactCreate], where) -> None:
    """A correction names a fact that exists and may still be taken back."""
    named = [(i, item.replaces) for i, item in enumerate(items) if item.replaces is not None]
    for (i, old), record in zip(named, store.fact_records([old for _, old in named]), strict=True):
        if record is None:
            raise bad_input(f"{where(i)}.replaces", f"unknown fact id {old!r}")
        if record["status"] in ("failed", "undone"):
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"{where(i)}.replaces: fact {old} is {record['status']}: there is nothing to replace")


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=FactsAccepted, dependencies=[WriteAccess])
def teach(
    settings: SettingsDep, store: StoreDep, engine: EngineDep, limiter: RateLimiterDep, request: Request,
    body: FactCreate | list[FactCreate] = Body(description="one fact, or a list of facts"),
) -> FactsAccepted:
    """Queue facts for learning. Answers 202 once every fact is stored in Redis (all of them, or none).

    A `client_id` sent again with the same fact is that fact (a retry); with other content it is a 409.
    """
    items = body if isinstance(body, list) else [body]
    if not items:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "body: the list of facts is empty")
    if len(items) > settings.max_facts_per_request:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"body: {len(items)} facts; at most {settings.max_facts_per_request} per request")

    def where(i: int) -> str:
        return f"facts[{i}]" if isinstance(body, list) else "body"

    facts = [_validate(item, where(i), settings) for i, item in enumerate(items)]
    _check_replaces(store, items, where)
    done = accept(facts, [item.client_id for item in items], where=where, settings=settings, store=store,
                  engine=engine, limiter=limiter, request=request, replaces=[item.replaces for item in items])
    accepted = []
    records = store.fact_records([fid for fid, new in zip(done.fact_ids, done.created, strict=True) if not new])
    duplicates = iter(records)  # only a duplicate can have moved on from "queued"
    for fact_id, created in zip(done.fact_ids, done.created, strict=True):
        current = {} if created else next(duplicates) or {}
        accepted.append(FactAccepted(id=fact_id, status=current.get("status", "queued"), duplicate=not created))
    return FactsAccepted(facts=accepted)


MAX_SHARING = 10


def _memory_of(fact_id: str, engine: Engine, store: RedisStore) -> FactMemory | None:
    """The rows the fact wrote and the live facts that share them, from this replica's ledger."""
    if not engine.loaded:
        return None
    writers = engine.replica.writers
    rows = writers.rows_of(fact_id)
    sharing = list(writers.sharing(fact_id).items())[:MAX_SHARING]
    texts = store.fact_texts([other for other, _ in sharing])
    return FactMemory(rows=sum(len(r) for r in rows.values()), rows_per_layer={i: len(r) for i, r in rows.items()},
                      shares_rows_with=[SharedRows(id=other, rows=n, text=text)
                                        for (other, n), text in zip(sharing, texts, strict=True)])


@router.get("/{fact_id}", response_model=FactPublic)
def fact_status(fact_id: str, store: StoreDep, engine: EngineDep) -> FactPublic:
    record = store.fact_record(fact_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown fact id {fact_id!r}")
    return FactPublic(
        id=fact_id, status=record["status"], document=record.get("document"),
        version=int(record["version"]) if "version" in record else None,
        steps=int(record["steps"]) if "steps" in record else None,
        reason=record.get("reason"), attempts=int(record.get("attempts", 0)),
        submitted_at=float(record["submitted_at"]) if "submitted_at" in record else None,
        learned_at=float(record["learned_at"]) if "learned_at" in record else None,
        undo_requested="undo_requested" in record,
        undone_version=int(record["undone_version"]) if "undone_version" in record else None,
        replaces=record.get("replaces"), replaced_by=record.get("replaced_by"),
        memory=_memory_of(fact_id, engine, store),
    )


@router.delete("/{fact_id}", status_code=status.HTTP_202_ACCEPTED, response_model=UndoAccepted,
               dependencies=[WriteAccess])
def undo(fact_id: str, store: StoreDep) -> UndoAccepted:
    """Take back what a fact taught. The worker publishes the reverted rows as a new version.

    A fact not learned yet is cancelled; asking twice is the same as asking once.
    """
    current = store.request_undo(fact_id)
    log.info("undo requested", extra={"fact_id": fact_id, "status": current})
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown fact id {fact_id!r}")
    if current == "failed":
        raise HTTPException(status.HTTP_409_CONFLICT, f"fact {fact_id} failed and was never learned: nothing to undo")
    return UndoAccepted(id=fact_id, status=current)
