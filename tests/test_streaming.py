"""A chat stream waits for text on the event loop: it holds no thread of the server's pool, so streams
cannot starve the routes that run there (teaching, fact status) however many are open."""

import asyncio
import threading

import anyio
from starlette.concurrency import iterate_in_threadpool

from model.generation import Completion, SamplingParams
from service.limits import GenerationGate
from service.openai.serving import ChatRequest, OpenAIServing
from service.settings import ApiSettings


class StalledEngine:
    """What a stream asks of the engine (its gate and complete()), stalled mid-answer until released: the
    stream's own logic is under test, not generation."""

    def __init__(self) -> None:
        self.gate = GenerationGate(4)
        self.release = threading.Event()

    def complete(self, messages, params, on_text, cancelled):
        on_text("Hello")
        assert self.release.wait(30)
        on_text(" world")
        return Completion("Hello world", 3, 2, "stop"), 7


def test_a_waiting_stream_holds_no_thread_of_the_servers_pool():
    engine = StalledEngine()
    serving = OpenAIServing(engine, ApiSettings())
    chat = ChatRequest([{"role": "user", "content": "Hi"}], SamplingParams(8), "smft", True, False)

    async def consume():
        body = serving.stream(chat)
        # as StreamingResponse iterates a body: a plain iterator would be pulled through the thread pool
        chunks = body if hasattr(body, "__aiter__") else iterate_in_threadpool(body)
        got = [await anext(chunks), await anext(chunks)]  # the role, then "Hello"
        waiting = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0.3)  # the generation is stalled: the stream waits
        borrowed = anyio.to_thread.current_default_thread_limiter().borrowed_tokens
        engine.release.set()
        got.append(await waiting)
        got += [c async for c in chunks]
        return borrowed, got

    borrowed, chunks = anyio.run(consume)
    assert borrowed == 0
    assert '"content":"Hello"' in chunks[1] and '"content":" world"' in chunks[2]
    assert '"finish_reason":"stop"' in chunks[-2] and chunks[-1] == "data: [DONE]\n\n"
    assert engine.gate._free.acquire(blocking=False)  # the stream left the gate
