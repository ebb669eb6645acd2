"""The OpenAI-compatible endpoints, driven by the official `openai` client (tiny model, real HTTP)."""

import openai
import pytest

from tests.processes import wait_status


@pytest.fixture(scope="module")
def client(module_service):
    _, api, _, _ = module_service
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who invented the engine?"}]


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["smft"]
    assert client.models.retrieve("smft").id == "smft"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4o")


def test_chat_completion_plain_and_streamed_agree(client):
    plain = client.chat.completions.create(model="smft", messages=MESSAGES, max_tokens=8)
    choice = plain.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert plain.usage.completion_tokens <= 8 and plain.usage.prompt_tokens > 0
    assert plain.system_fingerprint.startswith("smft-v")

    stream = client.chat.completions.create(model="smft", messages=MESSAGES, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_answers_from_the_newest_memory(client, module_service):
    _, api, _, _ = module_service
    fact_id = api.client.post("/v1/facts", json={"text": "The river Vell flows into the Amber sea."}).json()
    version = wait_status(api, fact_id["facts"][0]["id"], "learned")["version"]
    api.client.post("/v1/query", json={"question": "?", "min_version": version, "max_new_tokens": 1})  # applied
    answer = client.chat.completions.create(model="smft", messages=MESSAGES, max_tokens=2)
    assert int(answer.system_fingerprint.removeprefix("smft-v")) >= version


@pytest.mark.parametrize("kwargs,error,words", [
    ({"model": "gpt-4o"}, openai.NotFoundError, "gpt-4o"),
    ({"messages": []}, openai.UnprocessableEntityError, "messages"),
    ({"max_tokens": 100_000}, openai.UnprocessableEntityError, "max_tokens"),
    ({"n": 2}, openai.UnprocessableEntityError, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, openai.UnprocessableEntityError, "stop"),
    ({"messages": [{"role": "user", "content": "bad \x00"}]}, openai.UnprocessableEntityError, "control"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, openai.UnprocessableEntityError, "role"),
])
def test_bad_chat_requests_get_openai_style_errors(client, kwargs, error, words):
    args = {"model": "smft", "messages": MESSAGES, "max_tokens": 4, **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**args)
    assert words in info.value.message
