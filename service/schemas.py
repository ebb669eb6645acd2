"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the statement to learn", examples=["Mira Quell invented the Zorblax engine."])
    paraphrases: list[str] = Field(default_factory=list, description="other wordings of the statement")
    question: str | None = Field(None, description="a question the fact answers (given with `answer`)")
    answer: str | None = Field(None, description="the short answer to `question`")
    client_id: str | None = Field(None, max_length=128, description="idempotency key: the same id is one fact")


FactState = Literal["queued", "training", "learned", "failed", "undone"]


class FactAccepted(BaseModel):
    id: str
    status: FactState
    duplicate: bool = Field(description="true when client_id named a fact that was already accepted")


class FactsAccepted(BaseModel):
    facts: list[FactAccepted]


class FactPublic(BaseModel):
    id: str
    status: FactState
    version: int | None = Field(None, description="memory version that taught it (when learned)")
    steps: int | None = None
    reason: str | None = Field(None, description="why it failed, or why its last attempt failed")
    attempts: int = 0
    submitted_at: float | None = None
    learned_at: float | None = None
    undo_requested: bool = Field(False, description="DELETE was called; status becomes undone when it is done")
    undone_version: int | None = Field(None, description="memory version that took it back")


class UndoAccepted(BaseModel):
    id: str
    status: FactState = Field(description="the fact's status when the undo was requested")
    undo_requested: bool = True


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    max_new_tokens: int = Field(32, ge=1)
    min_version: int | None = Field(None, ge=0, description="answer only from this memory version or newer")
    after_fact: str | None = Field(None, description="answer only after this fact is learned (read your write)")
    wait_s: float = Field(10.0, ge=0, description="how long to wait for min_version / after_fact")


class Timings(BaseModel):
    wait_ms: float
    generate_ms: float
    total_ms: float
    batch_size: int = Field(1, description="questions answered in the same batched generation")


class QueryResponse(BaseModel):
    answer: str
    memory_version: int
    timings: Timings


class Status(BaseModel):
    model: str
    memory_version: int = Field(description="version this replica answers from")
    memory_applied_at: float | None = Field(None, description="when this replica applied it (unix time)")
    published_version: int = Field(description="newest version the worker published")
    snapshot_version: int | None
    queue_depth: int = Field(description="facts accepted but not yet learned or failed")
    queue_age_s: float = Field(description="how long the oldest fact not yet learned has waited (0: none)")
    dead_letters: int
