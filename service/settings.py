"""Settings of an API replica."""

from __future__ import annotations

from pydantic import Field

from worker.settings import CommonSettings


class ApiSettings(CommonSettings):
    host: str = Field("127.0.0.1", description="address the API binds to")
    port: int = Field(8000, ge=1, le=65535)
    api_token: str | None = Field(None, description="when set, write endpoints need 'Authorization: Bearer <token>'")
    max_text_chars: int = Field(2000, ge=1, description="longest fact text, paraphrase, question or answer")
    max_paraphrases: int = Field(16, ge=0)
    max_facts_per_request: int = Field(64, ge=1)
    max_new_tokens: int = Field(256, ge=1, description="upper bound a query or chat completion may ask for")
    max_messages: int = Field(64, ge=1, description="longest conversation a chat completion accepts")
    served_model: str = Field("smft", description="model id of the OpenAI-compatible API (GET /v1/models)")
    max_wait_s: float = Field(60.0, ge=0, description="longest a query waits to read its own write")
    ready_lag_versions: int = Field(0, ge=0, description="readyz fails when further behind the worker than this")
