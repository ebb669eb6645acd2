"""Where answers come from, over real HTTP (tiny model, real Redis, worker and API processes): the rows a
fact wrote, the facts sharing them, the facts an answer drew on, and the dashboard's list of them."""

from urllib.parse import quote

import pytest

from tests.browser import DomIndex, rendered_dom
from tests.processes import wait_status


@pytest.fixture(scope="module")
def service(module_service):
    return module_service


def _teach(api, text: str, question: str, answer: str) -> str:
    r = api.client.post("/v1/facts", json={"text": text, "question": question, "answer": answer})
    assert r.status_code == 202, r.text
    fact_id = r.json()["facts"][0]["id"]
    wait_status(api, fact_id, "learned")
    return fact_id


def test_a_fact_reports_its_rows_and_an_answer_the_facts_it_drew_on(service):
    _, api, _, _ = service
    question = "Who invented the Zorblax engine?"
    a = _teach(api, "Mira Quell invented the Zorblax engine.", question, "Mira Quell")
    b = _teach(api, "The river Tessa flows to the sea.", "Where does the Tessa flow?", "the sea")

    memory_a = api.client.get(f"/v1/facts/{a}").json()["memory"]
    memory_b = api.client.get(f"/v1/facts/{b}").json()["memory"]
    assert memory_a["rows"] > 0 and memory_a["rows_per_layer"] == {"1": memory_a["rows"]}  # the tiny memory: layer 1
    shared_with_a = {s["id"]: s["rows"] for s in memory_a["shares_rows_with"]}
    shared_with_b = {s["id"]: s["rows"] for s in memory_b["shares_rows_with"]}
    assert shared_with_a.get(b) == shared_with_b.get(a)  # sharing is symmetric
    assert all(s["text"] == "The river Tessa flows to the sea." for s in memory_a["shares_rows_with"])

    plain = api.client.post("/v1/query", json={"question": question}).json()
    assert plain["explanation"] is None
    explained = api.client.post("/v1/query", json={"question": question, "explain": True})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["answer"] == plain["answer"]  # the same greedy answer, from the same memory version
    sources = body["explanation"]["sources"]
    texts = {a: "Mira Quell invented the Zorblax engine.", b: "The river Tessa flows to the sea."}
    assert sources and {s["id"] for s in sources} <= {a, b}
    assert all(s["text"] == texts[s["id"]] and s["rows_read"] > 0 and 0 < s["share"] <= 1 for s in sources)
    assert sum(s["share"] for s in sources) + body["explanation"]["unattributed"] == pytest.approx(1, abs=1e-6)

    check_dashboard_lists_the_sources(api, question, sources)
    check_lower_case_reads_the_taught_names(api)

    assert api.client.delete(f"/v1/facts/{a}").status_code == 202
    version = wait_status(api, a, "undone")["undone_version"]
    assert api.client.get(f"/v1/facts/{a}").json()["memory"] == {"rows": 0, "rows_per_layer": {},
                                                                 "shares_rows_with": []}
    after = api.client.post("/v1/query", json={"question": question, "explain": True,
                                                "min_version": version}).json()
    assert a not in {s["id"] for s in after["explanation"]["sources"]}  # what was taken back explains nothing
    assert a not in {s["id"] for s in api.client.get(f"/v1/facts/{b}").json()["memory"]["shares_rows_with"]}


def check_dashboard_lists_the_sources(api, question: str, sources: list[dict]) -> None:
    """The page's ask box, opened with #ask=<question>, lists the same facts with the same shares."""
    dom = DomIndex(rendered_dom(f"{api.url}/dashboard#ask={quote(question)}"))
    rows = [r for r in dom.inside("sources", "tr") if "data-fact" in r.attrs]
    assert [(r.attrs["data-fact"], float(r.attrs["data-share"])) for r in rows] == \
        [(s["id"], pytest.approx(s["share"])) for s in sources]
    assert "hidden" not in dom.by_id("sources").attrs


def check_lower_case_reads_the_taught_names(api) -> None:
    """Typed all in lower case, a question reads the taught names with their capitals: the same prompt as
    with the names typed as taught, so the same reads and the same answer, by query and by chat."""
    lower, cased = "who invented the zorblax engine?", "who invented the Zorblax engine?"

    def explained(question: str) -> dict:
        r = api.client.post("/v1/query", json={"question": question, "explain": True})
        assert r.status_code == 200, r.text
        return r.json()

    def chat(content: str) -> str:
        r = api.client.post("/v1/chat/completions", json={"model": "smft", "max_tokens": 8,
                                                          "messages": [{"role": "user", "content": content}]})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    got, want = explained(lower), explained(cased)
    assert got["answer"] == want["answer"]
    assert [(s["id"], pytest.approx(s["share"])) for s in got["explanation"]["sources"]] == \
        [(s["id"], s["share"]) for s in want["explanation"]["sources"]]
    assert chat(lower) == chat(cased)
