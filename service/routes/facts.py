"""Teach facts and follow their status."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, HTTPException, Request, status

from model.errors import FactError
from model.facts import Fact, check_fact
from service.deps import EngineDep, RateLimiterDep, SettingsDep, StoreDep, WriteAccess, client_of
from service.limits import bad_input, check_text
from service.schemas import FactAccepted, FactCreate, FactPublic, FactsAccepted, UndoAccepted
from service.settings import ApiSettings
from worker.errors import NotReadyError

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


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=FactsAccepted, dependencies=[WriteAccess])
def teach(
    settings: SettingsDep, store: StoreDep, engine: EngineDep, limiter: RateLimiterDep, request: Request,
    body: FactCreate | list[FactCreate] = Body(description="one fact, or a list of facts"),
) -> FactsAccepted:
    """Queue facts for learning. Answers 202 once every fact is stored in Redis."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "body: the list of facts is empty")
    if len(items) > settings.max_facts_per_request:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"body: {len(items)} facts; at most {settings.max_facts_per_request} per request")
    facts = [_validate(item, f"facts[{i}]" if isinstance(body, list) else "body", settings)
             for i, item in enumerate(items)]
    tokenizer = engine.tokenizer
    if tokenizer is None:  # nothing is accepted unchecked
        raise NotReadyError("the tokenizer is still loading: facts are checked before they are accepted")
    for i, fact in enumerate(facts):  # refuse at the door what the worker could not train on
        try:
            check_fact(fact, tokenizer)
        except FactError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"facts[{i}]: {exc}") from exc
    retry_after = limiter.take(client_of(request), len(facts))
    if retry_after is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"rate limit: at most {settings.teach_rate_per_min:g} facts per minute per client "
                            f"(bursts of {settings.teach_burst}); retry in {retry_after:g}s",
                            headers={"Retry-After": str(int(retry_after))})
    accepted = []
    for fact, item in zip(facts, items, strict=True):
        fact_id, created = store.enqueue(fact, item.client_id)
        log.info("fact queued", extra={"fact_id": fact_id, "duplicate": not created})
        # Only a duplicate can have moved on from "queued"; a new fact needs no second read.
        current = {} if created else store.fact_record(fact_id) or {}
        accepted.append(FactAccepted(id=fact_id, status=current.get("status", "queued"), duplicate=not created))
    return FactsAccepted(facts=accepted)


@router.get("/{fact_id}", response_model=FactPublic)
def fact_status(fact_id: str, store: StoreDep) -> FactPublic:
    record = store.fact_record(fact_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown fact id {fact_id!r}")
    return FactPublic(
        id=fact_id, status=record["status"],
        version=int(record["version"]) if "version" in record else None,
        steps=int(record["steps"]) if "steps" in record else None,
        reason=record.get("reason"), attempts=int(record.get("attempts", 0)),
        submitted_at=float(record["submitted_at"]) if "submitted_at" in record else None,
        learned_at=float(record["learned_at"]) if "learned_at" in record else None,
        undo_requested="undo_requested" in record,
        undone_version=int(record["undone_version"]) if "undone_version" in record else None,
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
