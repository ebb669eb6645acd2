"""Bad input over real HTTP: one worker and API shared by the module (tiny model, real Redis)."""

import pytest

from tests.processes import wait_status


@pytest.fixture(scope="module")
def service(module_service):
    return module_service


@pytest.mark.parametrize("body,code,words", [
    ("{not json", 422, "JSON"),
    ({}, 422, "text"),
    ({"text": "x" * 3000}, 422, "text"),
    ({"text": "A fact.", "paraphrases": ["p"] * 40}, 422, "paraphrases"),
    ({"text": "A fact.", "question": "Who?"}, 422, "answer"),
    ({"text": "   "}, 422, "text"),
    ({"text": "bad \x00 byte"}, 422, "control"),
    ({"text": "A fact.", "colour": "red"}, 422, "colour"),
    ([], 422, "empty"),
    (b'{"text": "caf\xe9 au lait is served in Paris."}', 422, "utf-8"),
    (b'{"text": "A lone surrogate \\ud800 here."}', 422, "surrogate"),
])
def test_bad_facts_get_a_4xx_that_says_what_is_wrong(service, body, code, words):
    _, api, _, _ = service
    if isinstance(body, str | bytes):
        kwargs = {"content": body, "headers": {"content-type": "application/json"}}
    else:
        kwargs = {"json": body}
    r = api.client.post("/v1/facts", **kwargs)
    assert r.status_code == code, r.text
    assert words.lower() in r.json()["detail"].lower()


def test_other_bad_requests(service):
    _, api, _, _ = service
    assert api.client.get("/v1/facts/nope").status_code == 404
    r = api.client.post("/v1/query", json={"question": "Hi?", "max_new_tokens": 100000})
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"]
    r = api.client.post("/v1/query", json={"question": "Hi?", "after_fact": "nope"})
    assert r.status_code == 404 and "after_fact" in r.json()["detail"]
    r = api.client.post("/v1/query", json={"question": "Hi?", "min_version": 10**6})
    assert r.status_code == 409 and "min_version" in r.json()["detail"]
    ok = api.client.post("/v1/facts", json={"text": "Accepted facts survive bad requests.", "client_id": "k1"})
    dup = api.client.post("/v1/facts", json={"text": "Accepted facts survive bad requests.", "client_id": "k1"})
    assert ok.json()["facts"][0]["id"] == dup.json()["facts"][0]["id"] and dup.json()["facts"][0]["duplicate"]
    # The key used again for other content: refused whole, even the fact beside it is not stored.
    depth = api.client.get("/v1/status").json()["queue_depth"]
    clash = api.client.post("/v1/facts", json=[{"text": "A fact beside the clash."},
                                               {"text": "Something else.", "client_id": "k1"}])
    assert clash.status_code == 409 and "k1" in clash.json()["detail"]
    assert "nothing was stored" in clash.json()["detail"]
    assert api.client.get("/v1/status").json()["queue_depth"] <= depth
    wait_status(api, ok.json()["facts"][0]["id"], "learned")


def test_prompts_longer_than_the_model_reads_get_a_422_not_minutes_of_prefill(service):
    _, api, _, _ = service
    long = " ".join(["lighthouse"] * 180)  # within the character limit, past the tiny model's 512 tokens
    r = api.client.post("/v1/chat/completions", json={
        "model": "smft", "messages": [{"role": "user", "content": long}] * 64})
    assert r.status_code == 422 and "tokens" in r.json()["detail"] and "messages" in r.json()["detail"]
    r = api.client.post("/v1/query", json={"question": long + "?"})
    assert r.status_code == 422 and "tokens" in r.json()["detail"] and "question" in r.json()["detail"]


def test_generations_past_the_bound_are_refused_at_once():
    from service.errors import Overloaded
    from service.limits import GenerationGate

    gate = GenerationGate(2)
    gate.enter()
    with gate.held():
        with pytest.raises(Overloaded, match="2 generations"):
            gate.enter()
    gate.enter()  # one left when the held one ended
