"""The subset of OpenAI's chat-completions schema the service speaks: requests, responses and stream chunks.

Fields clients send that change nothing here (penalties, logit_bias, user...) are accepted and ignored,
so existing tools work unchanged; fields that would change the answer and are not supported (n > 1,
tools) are refused with a message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="text, or a list of text parts")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="deprecated OpenAI name of max_completion_tokens")
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2, description="0 (default here): greedy, deterministic answers")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end the answer")
    n: int = Field(1, ge=1, le=1, description="only one choice per request")
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict] | None = Field(None, max_length=0, description="tool calling is not supported")

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str = Field(description="smft-v<memory version> the answer came from")


class DeltaMessage(BaseModel):
    """What a stream chunk adds to the answer: the role once, then pieces of text."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = Field(None, description="on the last chunks: smft-v<memory version>")
    usage: Usage | None = Field(None, description="on the last chunk, with stream_options.include_usage")

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict:
        body = handler(self)
        return {k: v for k, v in body.items() if v is not None or k not in ("system_fingerprint", "usage")}


class StreamErrorInfo(BaseModel):
    message: str
    type: Literal["server_error"] = "server_error"


class StreamError(BaseModel):
    """An error after the stream began (its headers are sent): it goes in the stream, as OpenAI does."""

    error: StreamErrorInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "smft"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
