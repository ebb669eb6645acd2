"""Checks on user text shared by every route: 422s that name the field and say what is wrong."""

from __future__ import annotations

from fastapi import HTTPException, status


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
