"""Teach a document: its text split into statements, each a fact, followed and taken back together."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

from fastapi import APIRouter, HTTPException, Request, status

from model.documents import split_statements
from model.facts import Fact
from service.deps import EngineDep, RateLimiterDep, SettingsDep, StoreDep, WriteAccess
from service.intake import accept
from service.limits import bad_input, check_text
from service.schemas import DocumentAccepted, DocumentCreate, DocumentFact, DocumentPublic, DocumentState
from worker.store import DocumentPost, RedisStore, fact_from_record

router = APIRouter(prefix="/v1/documents", tags=["documents"])
log = logging.getLogger(__name__)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentAccepted, dependencies=[WriteAccess])
def teach_document(body: DocumentCreate, settings: SettingsDep, store: StoreDep, engine: EngineDep,
                   limiter: RateLimiterDep, request: Request) -> DocumentAccepted:
    """Split the text into statements and queue each as a fact (all of them, or none on any error)."""
    check_text("title", body.title, settings.max_text_chars)
    check_text("text", body.text, settings.max_document_chars)
    if body.client_id is not None and not body.client_id.strip():
        raise bad_input("client_id", "must not be blank")
    statements = split_statements(body.text)
    if not statements:
        raise bad_input("text", "holds no statement to learn")
    limit = settings.max_document_facts
    if limiter.enabled:  # over the burst it could never be accepted: say so rather than 429 forever
        limit = min(limit, settings.teach_burst)
    if len(statements) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"text: {len(statements)} statements; at most {limit} per document (split it)")
    digest = hashlib.sha256(f"{body.title}\0{body.text}".encode()).hexdigest()
    done = accept([Fact(s) for s in statements], [None] * len(statements),
                  where=lambda i: f"text: statement {i} ({statements[i][:40]!r}...)",
                  settings=settings, store=store, engine=engine, limiter=limiter, request=request,
                  document=DocumentPost(body.title, len(body.text), digest, body.client_id))
    assert done.document_id is not None
    if not done.document_created:  # a retry: say where its statements are now
        records = [r or {} for r in store.fact_records(done.fact_ids)]
        return DocumentAccepted(id=done.document_id, duplicate=True, facts=_facts(done.fact_ids, records))
    return DocumentAccepted(id=done.document_id, duplicate=False, facts=[
        DocumentFact(id=fid, text=s, status="queued") for fid, s in zip(done.fact_ids, statements, strict=True)])


@router.get("/{document_id}", response_model=DocumentPublic)
def document_status(document_id: str, store: StoreDep) -> DocumentPublic:
    record = _record(store, document_id)
    records = [r or {} for r in store.fact_records(record["fact_ids"])]
    facts = _facts(record["fact_ids"], records)
    counts = Counter(f.status for f in facts)
    undo_requested = all("undo_requested" in r for r in records)
    return DocumentPublic(id=document_id, title=record["title"], status=_overall(counts), chars=record["chars"],
                          submitted_at=record["submitted_at"], counts=dict(counts), undo_requested=undo_requested,
                          facts=facts)


@router.delete("/{document_id}", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentPublic,
               dependencies=[WriteAccess])
def undo_document(document_id: str, store: StoreDep) -> DocumentPublic:
    """Take back every statement of the document (each as DELETE /v1/facts/{id} does); asking twice is asking once.

    Statements taught in the same version are reverted together, once.
    """
    record = _record(store, document_id)
    for fact_id in record["fact_ids"]:
        store.request_undo(fact_id)  # idempotent per fact, so a retry after a failure here finishes the job
    log.info("document undo requested", extra={"document": document_id, "facts": len(record["fact_ids"])})
    return document_status(document_id, store)


def _record(store: RedisStore, document_id: str) -> dict:
    record = store.document_record(document_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown document id {document_id!r}")
    return record


def _facts(fact_ids: list[str], records: list[dict[str, str]]) -> list[DocumentFact]:
    out = []
    for fact_id, record in zip(fact_ids, records, strict=True):
        out.append(DocumentFact(
            id=fact_id, text=fact_from_record(fact_id, record).text if "fact" in record else "",
            status=record.get("status", "failed"), version=int(record["version"]) if "version" in record else None,
            reason=record.get("reason")))
    return out


def _overall(counts: Counter) -> DocumentState:
    """One status for the document, from its statements' statuses."""
    if counts["queued"] or counts["training"]:
        return "training" if counts["training"] or counts["learned"] else "queued"
    total = sum(counts.values())
    for state in ("learned", "failed", "undone"):
        if counts[state] == total:
            return state
    return "partial" if counts["learned"] else "undone" if counts["undone"] else "failed"
