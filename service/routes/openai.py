"""OpenAI-compatible endpoints, HTTP only: /v1/models and /v1/chat/completions (plain, or streamed as SSE).

The logic is `service/openai/serving.py`; plain responses also carry the memory version in the
X-Memory-Version header.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from service.openai.protocol import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from service.openai.serving import OpenAIServing

router = APIRouter(prefix="/v1", tags=["openai"])


def get_serving(request: Request) -> OpenAIServing:
    return request.app.state.openai


ServingDep = Annotated[OpenAIServing, Depends(get_serving)]


@router.get("/models", response_model=ModelList)
def list_models(serving: ServingDep) -> ModelList:
    return serving.models()


@router.get("/models/{model_id}", response_model=ModelCard)
def get_model(model_id: str, serving: ServingDep) -> ModelCard:
    return serving.model(model_id)


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {}}, "description": "with stream=true: SSE chunks"}})
async def chat_completions(req: ChatCompletionRequest, serving: ServingDep, response: Response):
    chat = serving.check(req)
    if chat.stream:
        return StreamingResponse(serving.stream(chat), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    completion = await serving.complete(chat)
    response.headers["X-Memory-Version"] = completion.system_fingerprint.removeprefix("smft-v")
    return completion
