"""End to end on the tiny model: real redis-server, real worker and API processes, real HTTP."""

import json
import re
import signal
import time
from urllib.parse import quote

import httpx
import pytest

from model.notes import Note, Notes
from model.snapshot import MemoryDelta
from tests.browser import DomIndex, rendered_dom
from tests.processes import Api, running_service, start_worker, stop, wait_status
from worker.store import RedisStore

pytestmark = pytest.mark.slow  # many real processes


def teach(api: Api, text: str) -> str:
    r = api.client.post("/v1/facts", json={"text": text})
    assert r.status_code == 202, r.text
    return r.json()["facts"][0]["id"]


@pytest.fixture
def service(tiny_env, tmp_path):
    with running_service(tiny_env, tmp_path / "service.log") as service:
        yield service


def test_teach_status_query_and_second_replica(service):
    env, api, _, log = service
    r = api.client.post("/v1/facts", json={"text": "Mira Quell invented the Zorblax engine.",
                                           "paraphrases": ["The Zorblax engine was invented by Mira Quell."],
                                           "question": "Who invented the Zorblax engine?", "answer": "Mira Quell"})
    assert r.status_code == 202, r.text
    fact_id = r.json()["facts"][0]["id"]
    learned = wait_status(api, fact_id, "learned")
    assert learned["version"] >= 1 and learned["steps"] == 3
    q = api.client.post("/v1/query", json={"question": "Who invented the Zorblax engine?", "max_new_tokens": 5,
                                           "after_fact": fact_id})
    assert q.status_code == 200, q.text
    assert q.json()["memory_version"] >= learned["version"]
    second = Api(env, log)
    try:
        second.wait_ready()
        q2 = second.client.post("/v1/query", json={"question": "Who?", "min_version": learned["version"]})
        assert q2.json()["memory_version"] == q.json()["memory_version"]
    finally:
        second.stop()


def test_delete_takes_a_fact_back_and_the_replica_answers_from_the_undo_version(service):
    _, api, _, _ = service
    a = teach(api, "Mira Quell invented the Zorblax engine.")
    wait_status(api, a, "learned")
    b = teach(api, "The river Tessa flows into the Quorn sea.")
    taught_b = wait_status(api, b, "learned")["version"]
    r = api.client.delete(f"/v1/facts/{a}")
    assert r.status_code == 202 and r.json() == {"id": a, "status": "learned", "undo_requested": True}
    undone = wait_status(api, a, "undone")
    assert undone["undo_requested"] and undone["undone_version"] == taught_b + 1
    assert wait_status(api, b, "learned")["version"] == taught_b
    q = api.client.post("/v1/query", json={"question": "Who?", "min_version": undone["undone_version"],
                                           "max_new_tokens": 2})
    assert q.status_code == 200 and q.json()["memory_version"] == undone["undone_version"]
    assert api.client.delete("/v1/facts/nope").status_code == 404
    assert api.client.delete(f"/v1/facts/{a}").json()["status"] == "undone"  # idempotent


def test_the_api_puts_the_live_statements_before_a_question_and_drops_an_undone_one(service):
    env, api, _, log = service
    a = teach(api, "Mira Quell invented the Zorblax engine.")
    learned = wait_status(api, a, "learned")["version"]
    asked = {"question": "Which engine did Mira Quell invent?", "min_version": learned, "max_new_tokens": 4}
    note = [{"id": a, "text": "Mira Quell invented the Zorblax engine."}]
    noted, bare = api, Api({**env, "SMFT_NOTES": "off"}, log)  # notes are on by default
    ungrounded = Api({**env, "SMFT_NOTE_GROUNDING": "false"}, log)
    try:
        bare.wait_ready()
        ungrounded.wait_ready()
        assert bare.client.post("/v1/query", json=asked).json()["notes"] == []
        q = noted.client.post("/v1/query", json=asked)
        assert q.status_code == 200, q.text
        assert q.json()["notes"] == note and q.json()["notes_set_aside"] == []  # "Mir Zorblax engine.": grounded
        explained = noted.client.post("/v1/query", json={**asked, "explain": True}).json()
        assert explained["notes"] == q.json()["notes"] and explained["answer"] == q.json()["answer"]
        far = noted.client.post("/v1/query", json={**asked, "question": "What is the capital of Peru?"})
        assert far.json()["notes"] == []  # too few of its words in any statement
        chat = noted.client.post("/v1/chat/completions", json={
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Which engine did Mira Quell invent?"}],
            "model": "smft", "max_tokens": 4})
        assert chat.status_code == 200, chat.text
        dom = DomIndex(rendered_dom(f"{noted.url}/dashboard#ask={quote(asked['question'])}"))
        assert [li.attrs["data-fact"] for li in dom.inside("notes", "li")] == [a]  # the page lists the note
        assert "hidden" not in dom.by_id("notes").attrs

        # One token, "Mir": an answer that takes no word of its note (SMFT_NOTE_GROUNDING, the default) is made
        # again without it, as asked without notes (the memory read, as it is with them)
        short = {**asked, "max_new_tokens": 1}
        kept = ungrounded.client.post("/v1/query", json=short).json()
        assert kept["notes"] == note and not Notes().grounding(short["question"], [Note(a, note[0]["text"])])(
            kept["answer"])
        for how in ({}, {"explain": True}):
            redone = noted.client.post("/v1/query", json={**short, **how}).json()
            assert redone["notes"] == [] and redone["notes_set_aside"] == note
            assert redone["answer"] == bare.client.post("/v1/query", json=short).json()["answer"]
        chat = {"messages": [{"role": "user", "content": short["question"]}], "model": "smft", "max_tokens": 1}
        streamed = noted.client.post("/v1/chat/completions", json={**chat, "stream": True})
        pieces = [json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                  for line in streamed.text.splitlines() if line.startswith("data: {")]
        assert "".join(pieces) == bare.client.post("/v1/chat/completions", json=chat).json()[
            "choices"][0]["message"]["content"]  # the client sees only the answer made again

        assert api.client.delete(f"/v1/facts/{a}").status_code == 202
        undone = wait_status(api, a, "undone")["undone_version"]
        after = noted.client.post("/v1/query", json={**asked, "min_version": undone}).json()
        assert after["memory_version"] >= undone and after["notes"] == []  # gone with the fact's rows
    finally:
        bare.stop()
        ungrounded.stop()


def test_a_question_no_note_matches_is_answered_as_version_0(service):
    env, scoped, _, log = service  # SMFT_MEMORY_SCOPE=noted is the default
    far = {"question": "What is the capital of Peru?", "max_new_tokens": 8}
    before = scoped.client.post("/v1/query", json=far).json()
    assert before["memory_version"] == 0 and not before["read_memory"]
    a = teach(scoped, "Mira Quell invented the Zorblax engine.")
    learned = wait_status(scoped, a, "learned")["version"]
    every = Api({**env, "SMFT_MEMORY_SCOPE": "all"}, log)
    try:
        every.wait_ready()
        q = scoped.client.post("/v1/query", json={**far, "min_version": learned, "explain": True}).json()
        assert q["memory_version"] >= learned and q["notes"] == [] and not q["read_memory"]
        assert q["answer"] == before["answer"] and q["explanation"]["sources"] == []  # version 0's answer
        asked = {"question": "Which engine did Mira Quell invent?", "min_version": learned, "max_new_tokens": 4}
        noted = scoped.client.post("/v1/query", json={**asked, "explain": True}).json()
        assert noted["read_memory"] and noted["notes"][0]["id"] == a
        # one word of four and a name the note lacks: no note (a note naming all the question's names takes half the
        # words, model/notes.py), but a taught fact's name, so the memory answers
        named = scoped.client.post("/v1/query",
                                   json={**asked, "question": "Who sang the Zorblax anthem in 1990?"}).json()
        assert named["notes"] == [] and named["read_memory"]
        assert every.client.post("/v1/query", json={**far, "min_version": learned}).json()["read_memory"]
        chat = scoped.client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": far["question"]}], "model": "smft", "max_tokens": 8,
            "temperature": 0})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] == before["answer"]  # the chat path is scoped too
    finally:
        every.stop()


def test_api_restart_answers_from_learned_memory(service):
    env, api, _, log = service
    ids = [teach(api, f"The river number {i} flows to the sea.") for i in range(3)]
    versions = [wait_status(api, i, "learned")["version"] for i in ids]
    before = api.client.post("/v1/query", json={"question": "Which river?", "max_new_tokens": 6}).json()
    api.stop()
    again = Api(env, log)
    try:
        again.wait_ready()
        after = again.client.post("/v1/query", json={"question": "Which river?", "max_new_tokens": 6}).json()
        assert after["memory_version"] == before["memory_version"] >= max(versions)
        assert after["answer"] == before["answer"]
    finally:
        again.stop()


def test_sigkilled_worker_loses_nothing_and_applies_nothing_twice(tiny_env, tmp_path):
    log = tmp_path / "worker.log"
    env = {**tiny_env, "SMFT_STEPS": "400", "SMFT_BATCH_FACTS": "1"}  # slow enough to kill mid-batch
    p = RedisStore.connect(env["SMFT_REDIS_URL"])
    first = start_worker(env, log)
    api = Api(env, log)
    try:
        api.wait_ready()
        ids = [teach(api, f"Fact number {i} is about the fox.") for i in range(4)]
        wait_status(api, ids[0], "training")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert p.fact_record(ids[0])["status"] == "training"  # acknowledged, not learned, worker gone
        standby = start_worker(env, log)
        try:
            for i in ids:
                wait_status(api, i, "learned", timeout=180)
        finally:
            stop(standby)
        deltas = [MemoryDelta.from_bytes(d) for _, d in p.deltas_after(0)]
        taught = [f for d in deltas for f in d.fact_ids]
        assert sorted(taught) == sorted(ids)  # every fact exactly once
        assert [d.version for d in deltas] == list(range(1, len(deltas) + 1))  # no holes
        assert p.queue_depth() == 0
    finally:
        api.stop()
        stop(first)


def test_standby_takes_over_when_leader_stops(tiny_env, tmp_path):
    log = tmp_path / "worker.log"
    p = RedisStore.connect(tiny_env["SMFT_REDIS_URL"])
    leader = start_worker(tiny_env, log)
    api = Api(tiny_env, log)
    try:
        api.wait_ready()
        standby = start_worker(tiny_env, log)
        time.sleep(2)
        owner = p.lease_holder()
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        fact = api.client.post("/v1/facts", json={"text": "The standby worker learns this fact."}).json()
        wait_status(api, fact["facts"][0]["id"], "learned", timeout=60)
        assert p.lease_holder() not in (None, owner)
        stop(standby)
    finally:
        api.stop()
        stop(leader)


def test_token_guards_writes(tiny_env, tmp_path):
    env = {**tiny_env, "SMFT_API_TOKEN": "s3cret"}
    log = tmp_path / "api.log"
    worker = start_worker(env, log)
    api = Api(env, log)
    try:
        api.wait_ready()
        assert api.client.post("/v1/facts", json={"text": "No token here."}).status_code == 401
        bad = api.client.post("/v1/facts", json={"text": "Wrong token."}, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "token" in bad.json()["detail"]
        good = api.client.post("/v1/facts", json={"text": "Right token here."},
                               headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 202
        fact_id = good.json()["facts"][0]["id"]
        assert api.client.delete(f"/v1/facts/{fact_id}").status_code == 401  # undo is a write
        assert api.client.get("/healthz").status_code == 200  # reads stay open
    finally:
        api.stop()
        stop(worker)


def test_monitor_endpoints_report_what_the_worker_measured(tiny_env, tmp_path):
    env = {**tiny_env, "SMFT_MONITOR_EVERY_VERSIONS": "1", "SMFT_MONITOR_WINDOW": "8", "SMFT_API_TOKEN": "tok",
           "SMFT_PROTECT_READS": "1"}
    log = tmp_path / "service.log"
    worker = start_worker(env, log)
    api = Api(env, log)
    auth = {"Authorization": "Bearer tok"}
    api.client.headers.update(auth)
    try:
        api.wait_ready()
        r = api.client.post("/v1/facts", json={"text": "The river Tessa flows to the sea.",
                                               "question": "Where does the Tessa flow?", "answer": "the sea"})
        version = wait_status(api, r.json()["facts"][0]["id"], "learned")["version"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not api.client.get("/v1/monitor").json()["history"]:
            time.sleep(0.2)
        body = api.client.get("/v1/monitor").json()
        assert body["baseline"]["probe_questions"] >= 200
        assert body["latest"]["version"] == version and body["latest"]["slots_updated"] > 0
        metrics = api.client.get("/metrics").text
        assert f"smft_memory_version {version}" in metrics
        assert f"smft_slots_updated {body['latest']['slots_updated']}" in metrics
        assert "# TYPE smft_nll_change gauge" in metrics
        assert httpx.post(f"{api.url}/v1/monitor/evaluate").status_code == 401
        assert api.client.post("/v1/monitor/evaluate").status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(api.client.get("/v1/monitor").json()["history"]) < 2:
            time.sleep(0.2)
        assert len(api.client.get("/v1/monitor").json()["history"]) == 2
        check_dashboard(api)
    finally:
        api.stop()
        stop(worker)


def check_dashboard(api: Api) -> None:
    """The page, in headless Chromium with no route off this machine, shows what /v1/monitor reports."""
    page = httpx.get(f"{api.url}/dashboard")  # the page itself needs no token: it holds no data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), "the page loads something remote"

    dom = DomIndex(rendered_dom(f"{api.url}/dashboard#token=tok"))
    body = api.client.get("/v1/monitor", params={"limit": 1000}).json()
    history, latest = body["history"], body["latest"]
    assert dom.by_id("status").attrs.get("data-points") == str(len(history)), dom.by_id("status").text
    for element_id, key in (("version", "version"), ("retention", "retention_change"), ("nll", "nll_change"),
                            ("answered", "probe_answered"), ("slots", "slots_updated"), ("slots-share", "slots_share")):
        shown = dom.by_id(element_id).attrs["data-value"]  # empty for n/a (no F1 on the tiny model's probe)
        assert (float(shown) if shown else None) == pytest.approx(latest[key]), element_id
    assert float(dom.by_id("baseline").attrs["data-value"]) == pytest.approx(body["baseline"]["probe_f1"])
    status = api.client.get("/v1/status").json()
    assert dom.by_id("memory-version").text == str(status["memory_version"])
    assert float(dom.by_id("queue-age").attrs["data-value"]) == status["queue_age_s"] == 0  # all learned
    assert any(p["recall"] is not None for p in history)  # the facts came with a question
    for chart, key in (("chart-retention", "retention_change"), ("chart-nll", "nll_change"),
                       ("chart-recall", "recall"), ("chart-slots", "slots_updated")):
        points = [(int(c.attrs["data-version"]), float(c.attrs["data-value"])) for c in dom.inside(chart, "circle")]
        assert points == [(p["version"], pytest.approx(p[key])) for p in history if p[key] is not None], chart
    rows = dom.inside("history", "tr")
    assert len(rows) == len(history) + 1  # + the header row
    # each evaluation's share of the probe still answered, which F1 can hide, newest first
    headers = [th.text for th in dom.inside("history", "th")]
    cells = [td.text for td in dom.inside("history", "td")]
    column = [cells[i + headers.index("still answered")] for i in range(0, len(cells), len(headers))]
    assert column == ["n/a" if p["probe_answered"] is None else f"{100 * p['probe_answered']:.0f}%"
                      for p in reversed(history)]

    # Without the read token the page says why it shows nothing.
    status = DomIndex(rendered_dom(f"{api.url}/dashboard")).by_id("status")
    assert "error" in status.attrs.get("class", "") and "401" in status.text
