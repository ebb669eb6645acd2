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
    replaces: str | None = Field(None, max_length=64, description="id of a fact this one corrects: it is taken "
                                                                  "back in the version that teaches this one")


FactState = Literal["queued", "training", "learned", "failed", "undone"]


class FactAccepted(BaseModel):
    id: str
    status: FactState
    duplicate: bool = Field(description="true when client_id named a fact that was already accepted")


class FactsAccepted(BaseModel):
    facts: list[FactAccepted]


class SharedRows(BaseModel):
    id: str
    rows: int = Field(description="rows both facts wrote")
    text: str | None = None


class FactMemory(BaseModel):
    rows: int = Field(description="value rows this fact wrote and still owns (0 once taken back)")
    rows_per_layer: dict[int, int] = Field(description="those rows per memory layer (decoder layer index)")
    shares_rows_with: list[SharedRows] = Field(description="other live facts that also wrote some of these rows, "
                                                           "most shared first (up to 10)")


class FactPublic(BaseModel):
    id: str
    status: FactState
    document: str | None = Field(None, description="the document it was split from (POST /v1/documents)")
    version: int | None = Field(None, description="memory version that taught it (when learned)")
    steps: int | None = None
    reason: str | None = Field(None, description="why it failed, or why its last attempt failed")
    attempts: int = 0
    submitted_at: float | None = None
    learned_at: float | None = None
    undo_requested: bool = Field(False, description="DELETE was called; status becomes undone when it is done")
    undone_version: int | None = Field(None, description="memory version that took it back")
    replaces: str | None = Field(None, description="the fact this one corrects")
    replaced_by: str | None = Field(None, description="the fact that corrected this one (and took it back)")
    memory: FactMemory | None = Field(None, description="the memory rows it wrote, as this replica holds them "
                                                        "(null until the model is loaded)")


class UndoAccepted(BaseModel):
    id: str
    status: FactState = Field(description="the fact's status when the undo was requested")
    undo_requested: bool = True


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="what the document is", examples=["Zorblax engine notes"])
    text: str = Field(description="the text; split into statements, each taught as a fact",
                      examples=["Mira Quell invented the Zorblax engine in 1931. She was born in Port Orrin."])
    client_id: str | None = Field(None, max_length=128, description="idempotency key: the same id is one document")


DocumentState = Literal["queued", "training", "learned", "partial", "failed", "undone"]


class DocumentFact(BaseModel):
    id: str
    text: str = Field(description="the statement taught")
    status: FactState
    version: int | None = Field(None, description="memory version that taught it (when learned)")
    reason: str | None = None


class DocumentPublic(BaseModel):
    id: str
    title: str
    status: DocumentState = Field(description="learned: every statement learned; partial: some learned, the "
                                              "others failed or undone; queued/training: work left")
    chars: int
    submitted_at: float
    counts: dict[FactState, int] = Field(description="statements per status")
    undo_requested: bool = Field(False, description="DELETE was called for every statement")
    facts: list[DocumentFact]


class DocumentAccepted(BaseModel):
    id: str
    duplicate: bool = Field(description="true when client_id named a document that was already accepted")
    facts: list[DocumentFact] = Field(description="the statements it was split into, one fact each")


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    max_new_tokens: int = Field(32, ge=1)
    min_version: int | None = Field(None, ge=0, description="answer only from this memory version or newer")
    after_fact: str | None = Field(None, description="answer only after this fact is learned (read your write)")
    wait_s: float = Field(10.0, ge=0, description="how long to wait for min_version / after_fact")
    explain: bool = Field(False, description="also return the taught facts whose memory rows the answer read most")


class Timings(BaseModel):
    wait_ms: float
    generate_ms: float
    total_ms: float
    batch_size: int = Field(1, description="questions answered in the same batched generation")


class Source(BaseModel):
    id: str = Field(description="the fact")
    text: str | None = Field(None, description="its statement (null if Redis could not be asked)")
    share: float = Field(description="its share of what the memory added to the answer: read weight x row norm, "
                                     "over the positions that produced the answer")
    rows_read: int = Field(description="how many of its rows the answer read")


class Explanation(BaseModel):
    sources: list[Source] = Field(description="the facts the answer drew on, largest share first (up to 5)")
    unattributed: float = Field(description="the memory's share no live fact accounts for")


class NoteUsed(BaseModel):
    id: str = Field(description="the fact")
    text: str = Field(description="its statement, as put into the prompt")


class QueryResponse(BaseModel):
    answer: str
    memory_version: int
    timings: Timings
    explanation: Explanation | None = Field(None, description="with explain: where the answer came from")
    notes: list[NoteUsed] = Field(default_factory=list, description=(
        "with SMFT_NOTES: the taught statements put before the question, best match first"))
    notes_set_aside: list[NoteUsed] = Field(default_factory=list, description=(
        "with SMFT_NOTE_GROUNDING: the notes found for the question but left out, since the answer with them took "
        "nothing from them (it was answered again without them)"))
    read_memory: bool = Field(True, description=(
        "whether the answer read the memory; with SMFT_MEMORY_SCOPE=noted a question no note is found for is "
        "answered as version 0 (the model before any fact was taught)"))


class Status(BaseModel):
    model: str
    memory_version: int = Field(description="version this replica answers from")
    memory_applied_at: float | None = Field(None, description="when this replica applied it (unix time)")
    published_version: int = Field(description="newest version the worker published")
    snapshot_version: int | None
    queue_depth: int = Field(description="facts accepted but not yet learned or failed")
    queue_age_s: float = Field(description="how long the oldest fact not yet learned has waited (0: none)")
    dead_letters: int
