"""Settings of an API replica, and of `smft serve` (which runs a worker and an API)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from worker.settings import CommonSettings, WorkerSettings, unset_when_off


class ApiSettings(CommonSettings):
    host: str = Field("127.0.0.1", description="address the API binds to")
    port: int = Field(8000, ge=1, le=65535)
    api_token: str | None = Field(None, description="when set, write endpoints need 'Authorization: Bearer <token>'")
    protect_reads: bool = Field(False, description="reads (query, chat, status, monitor) need the token too")
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "Host header names the API answers to; empty: loopback names only without a token, any with one"))
    teach_rate_per_min: float = Field(120.0, ge=0, description="facts per minute one client may teach (0: no limit)")
    teach_burst: int = Field(128, ge=1, description="facts one client may teach at once before the rate applies")
    max_text_chars: int = Field(2000, ge=1, description="longest fact text, paraphrase, question or answer")
    max_paraphrases: int = Field(16, ge=0)
    max_facts_per_request: int = Field(64, ge=1)
    client_id_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long a client_id names its fact or document")
    max_document_chars: int = Field(20_000, ge=1, description="longest document text (POST /v1/documents)")
    max_document_facts: int = Field(128, ge=1, description="most statements one document may be split into")
    max_body_bytes: int = Field(4_000_000, ge=1024, description="largest request body (413 above)")
    max_new_tokens: int = Field(256, ge=1, description="upper bound a query or chat completion may ask for")
    max_messages: int = Field(64, ge=1, description="longest conversation a chat completion accepts")
    max_prompt_tokens: int | None = Field(None, ge=1, description=(
        "longest prompt in tokens (unset: the model's context less the new tokens asked for)"))
    max_generations: int = Field(32, ge=1, description="generations one replica holds at once; past it, 503")
    served_model: str = Field("smft", description="model id of the OpenAI-compatible API (GET /v1/models)")
    max_wait_s: float = Field(60.0, ge=0, description="longest a query waits to read its own write")
    batch_window_ms: float = Field(5.0, ge=0, le=1000, description="how long a query waits for others to batch with")
    max_batch: int = Field(8, ge=1, le=256, description="most questions answered in one generation")
    recase_names: bool = Field(True, description=(
        "a question typed all in lower case gets back the capitals of the taught facts' names, as the memory "
        "was taught them (model/recasing.py)"))
    notes: float | None = Field(0.6, ge=0, le=1, description=(
        "also put the taught statements that hold at least this share of a question's content words, and its most "
        "particular name if it names any (BM25, up to 3), into its prompt, beside the memory (model/notes.py); "
        "'off': the memory alone"))
    note_contrast: float | None = Field(2.0, ge=0, description=(
        "an answer with notes is decoded against version 0 given the prompt without them, what the notes and the "
        "memory add amplified by up to this much where the two disagree, for each new word (adaptive context-aware "
        "decoding, model/contrast.py); 'off': decoded with the notes alone"))
    note_grounding: bool = Field(True, description=(
        "an answer with notes that takes nothing from them (no word of theirs its question does not hold) misread "
        "them, and is made again without them, as a question that finds no note is (model/notes.py); a streamed "
        "answer with notes is held back until it takes from them"))
    memory_scope: Literal["all", "noted"] = Field("noted", description=(
        "which questions the memory answers: 'noted', those SMFT_NOTES finds a note for or that name something a "
        "taught fact names, the others as version 0 (the model before any fact was taught) answers them, so "
        "teaching leaves them as they were; 'all': every question (and every question with SMFT_NOTES=off)"))
    ready_lag_versions: int = Field(0, ge=0, description="readyz fails when further behind the worker than this")

    @field_validator("notes", "note_contrast", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        return unset_when_off(value)

    @model_validator(mode="after")
    def _safe_binding(self) -> ApiSettings:
        if not self.api_token and not _is_loopback(self.host):
            raise ValueError(f"refusing to listen on {self.host} without SMFT_API_TOKEN: anyone who reaches it could "
                             "teach the model. Set a token, or bind to 127.0.0.1")
        if self.protect_reads and not self.api_token:
            raise ValueError("SMFT_PROTECT_READS needs SMFT_API_TOKEN")
        if self.teach_burst < self.max_facts_per_request:
            raise ValueError(f"teach_burst ({self.teach_burst}) must allow one full request "
                             f"(max_facts_per_request={self.max_facts_per_request})")
        return self


    def host_names(self) -> frozenset[str]:
        """Host names to accept (empty: any). Without a token only loopback names, so that a page whose
        name resolves to 127.0.0.1 (DNS rebinding) cannot reach a tokenless API."""
        if self.allowed_hosts:
            return frozenset(h.lower() for h in self.allowed_hosts)
        if self.api_token:
            return frozenset()
        return frozenset({"localhost", "127.0.0.1", "::1", self.host.lower()})


class ServeSettings(ApiSettings, WorkerSettings):
    """`smft serve`: every setting of the worker and of the API, passed on to both as SMFT_* variables."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
