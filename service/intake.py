"""What every teaching route does once its body is valid: check the facts against the tokenizer,
charge the client's rate limit, and store them all in one step (nothing stored when any is refused)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from fastapi import HTTPException, Request, status

from model.errors import FactError
from model.facts import Fact, check_fact
from service.deps import client_of
from service.engine import Engine
from service.ratelimit import RateLimiter
from service.settings import ApiSettings
from worker.errors import NotReadyError
from worker.store import DocumentPost, Enqueued, RedisStore

log = logging.getLogger(__name__)


def accept(facts: Sequence[Fact], client_ids: Sequence[str | None], *, where: Callable[[int], str],
           settings: ApiSettings, store: RedisStore, engine: Engine, limiter: RateLimiter, request: Request,
           document: DocumentPost | None = None, replaces: Sequence[str | None] | None = None) -> Enqueued:
    """Queue `facts` (from `document`); `where(i)` names fact i in a 422."""
    tokenizer = engine.tokenizer
    if tokenizer is None:  # nothing is accepted unchecked
        raise NotReadyError("the tokenizer is still loading: facts are checked before they are accepted")
    for i, fact in enumerate(facts):  # refuse at the door what the worker could not train on
        try:
            check_fact(fact, tokenizer)
        except FactError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{where(i)}: {exc}") from exc
    retry_after = limiter.take(client_of(request), len(facts))
    if retry_after is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"rate limit: at most {settings.teach_rate_per_min:g} facts per minute per client "
                            f"(bursts of {settings.teach_burst}); retry in {retry_after:g}s",
                            headers={"Retry-After": str(int(retry_after))})
    done = store.enqueue_many(facts, client_ids, document, replaces, settings.client_id_ttl_s)
    for fact_id, created in zip(done.fact_ids, done.created, strict=True):
        log.info("fact queued", extra={"fact_id": fact_id, "duplicate": not created, "document": done.document_id})
    return done
