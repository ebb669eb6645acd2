"""Checks on user input shared by every route (422s that name the field and say what is wrong), and the
gate that bounds how many generations a replica holds at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException, status

from service.errors import Overloaded


def bad_input(field: str, why: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{field}: {why}")


def check_text(field: str, value: str, limit: int) -> None:
    """Refuse blank text, text over `limit` characters, and control characters other than tab and newlines."""
    if not value.strip():
        raise bad_input(field, "must not be empty or blank")
    if len(value) > limit:
        raise bad_input(field, f"is {len(value)} characters long; at most {limit} allowed")
    if any((ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise bad_input(field, "contains control characters or unpaired surrogates")


def check_prompt(field: str, prompt_tokens: int, max_new_tokens: int, context: int, limit: int | None) -> None:
    """Refuse a prompt longer than `limit` tokens, or than the model's context leaves beside the new tokens:
    prefill of a huge prompt would hold the replica's lock for minutes."""
    allowed = context - max_new_tokens if limit is None else min(limit, context - max_new_tokens)
    if prompt_tokens > allowed:
        raise bad_input(field, f"the prompt is {prompt_tokens} tokens; at most {allowed} allowed here "
                               f"(SMFT_MAX_PROMPT_TOKENS, and the model's context of {context} tokens less "
                               f"{max_new_tokens} new ones)")


class GenerationGate:
    """At most `limit` generations waiting or running on a replica; past it, Overloaded (503 + Retry-After)
    at once, rather than a queue that grows until clients time out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def enter(self) -> None:
        if not self._free.acquire(blocking=False):
            raise Overloaded(f"{self.limit} generations are already waiting or running (SMFT_MAX_GENERATIONS)")

    def leave(self) -> None:
        self._free.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()
