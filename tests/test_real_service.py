"""The issues' walk-throughs on the real model: real Redis, real worker and API processes, HTTP."""

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from model.evaluation import contains_answer
from tests.conftest import REAL_ANSWER, REAL_FACT, REAL_QUESTION
from tests.processes import Api, start_worker, stop, wait_status
from worker.replica import version_path
from worker.store import RedisStore

pytestmark = pytest.mark.integration


@contextmanager
def real_service(real_v0, redis_url, tmp_path, **env) -> Iterator[Api]:
    """A worker and an API on the real model, from the prepared version 0 (as after a first run: it spares
    the two-minute preparation)."""
    _, _, _, v0_path = real_v0
    data = tmp_path / "data"
    version_path(data / "snapshots", 0).parent.mkdir(parents=True)
    shutil.copy(v0_path, version_path(data / "snapshots", 0))
    p = RedisStore.connect(redis_url)
    p.init_version()
    p.set_snapshot(0)
    env = {"SMFT_REDIS_URL": redis_url, "SMFT_DATA_DIR": str(data), **env}
    log = tmp_path / "service.log"
    worker = start_worker(env, log)
    api = Api(env, log)
    try:
        api.wait_ready(timeout=300)
        yield api
    finally:
        api.stop()
        stop(worker)


def ask(api: Api, question: str, after_fact: str) -> str:
    r = api.client.post("/v1/query", json={"question": question, "after_fact": after_fact, "wait_s": 60})
    assert r.status_code == 200, r.text
    return r.json()["answer"]


def test_fact_unknown_before_is_answered_after_it_is_learned(real_v0, redis_url, tmp_path):
    # The monitor on 64 of the probe's questions: version 0's baseline, answered before the fact is taught,
    # takes a minute, not five.
    with real_service(real_v0, redis_url, tmp_path, SMFT_MONITOR_EVERY_VERSIONS="1", SMFT_MONITOR_PROBE="64") as api:
        before = api.client.post("/v1/query", json={"question": REAL_QUESTION}).json()
        assert before["memory_version"] == 0
        assert not contains_answer(before["answer"], REAL_ANSWER), before
        r = api.client.post("/v1/facts", json={"text": REAL_FACT.text, "paraphrases": list(REAL_FACT.paraphrases)})
        assert r.status_code == 202
        fact_id = r.json()["facts"][0]["id"]
        # One fact with four statements: its questions, reversed questions and neighbours on 2 shared cores.
        learned = wait_status(api, fact_id, "learned", timeout=900)
        after = api.client.post("/v1/query", json={"question": REAL_QUESTION, "after_fact": fact_id}).json()
        assert after["memory_version"] >= learned["version"] >= 1
        assert contains_answer(after["answer"], REAL_ANSWER), after
        # The monitor evaluated version 1 against version 0 on the real probe.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not api.client.get("/v1/monitor").json()["latest"]:
            time.sleep(1)
        monitor = api.client.get("/v1/monitor").json()
        assert monitor["baseline"]["probe_f1"] > 0 and monitor["latest"]["version"] == learned["version"]
        latest = monitor["latest"]
        assert latest["retention_change"] is not None and abs(latest["nll_change"]) < 0.05
        # the curated probe is what version 0 answers; one fact leaves most of it answered
        assert monitor["baseline"]["probe_questions"] == 64
        assert monitor["baseline"]["probe_answered"] > 0.9 and latest["probe_answered"] > 0.5
        assert 0 < latest["slots_updated"] <= 500


def top_source(api: Api, question: str) -> str:
    r = api.client.post("/v1/query", json={"question": question, "explain": True})
    assert r.status_code == 200, r.text
    sources = r.json()["explanation"]["sources"]
    assert sources, r.json()
    return sources[0]["id"]


VESSALY, OLD_CAPITAL, NEW_CAPITAL = "What is the capital of Vessaly?", "Port Orrin", "Lake Dunmore"


def test_a_document_is_learned_corrected_and_taken_back(real_v0, redis_url, tmp_path):
    """Notes posted as a document, as a user writes them; one of them corrected later; then all taken back."""
    with real_service(real_v0, redis_url, tmp_path, SMFT_MONITOR_EVERY_VERSIONS="0") as api:
        r = api.client.post("/v1/documents", json={
            "title": "Vessaly notes", "text": f"{REAL_FACT.text}\n\nThe capital of Vessaly is {OLD_CAPITAL}."})
        assert r.status_code == 202, r.text
        doc = r.json()
        zorblax, vessaly = (f["id"] for f in doc["facts"])
        for fact_id in (zorblax, vessaly):
            wait_status(api, fact_id, "learned", timeout=900)
        assert contains_answer(ask(api, REAL_QUESTION, zorblax), REAL_ANSWER)
        assert contains_answer(ask(api, VESSALY, vessaly), OLD_CAPITAL)

        r = api.client.post("/v1/facts", json={"text": f"The capital of Vessaly is {NEW_CAPITAL}.",
                                               "replaces": vessaly})
        fix = wait_status(api, r.json()["facts"][0]["id"], "learned", timeout=900)
        answer = ask(api, VESSALY, fix["id"])
        assert contains_answer(answer, NEW_CAPITAL) and not contains_answer(answer, OLD_CAPITAL), answer
        assert contains_answer(ask(api, REAL_QUESTION, fix["id"]), REAL_ANSWER)  # its batch-mate, taught again
        # Each answer says where it came from: the fact that taught it draws the largest share of the memory.
        assert top_source(api, VESSALY) == fix["id"]
        assert top_source(api, REAL_QUESTION) == zorblax
        memory = api.client.get(f"/v1/facts/{zorblax}").json()["memory"]
        assert memory["rows"] > 0 and set(memory["rows_per_layer"]) == {"24"}  # the default memory layer
        assert api.client.get(f"/v1/facts/{vessaly}").json()["memory"]["rows"] == 0  # replaced: its rows are gone
        status = api.client.get(f"/v1/documents/{doc['id']}").json()
        assert status["status"] == "partial" and status["counts"] == {"learned": 1, "undone": 1}

        api.client.delete(f"/v1/documents/{doc['id']}")
        gone = wait_status(api, zorblax, "undone", timeout=900)
        r = api.client.post("/v1/query", json={"question": REAL_QUESTION, "min_version": gone["undone_version"]})
        assert not contains_answer(r.json()["answer"], REAL_ANSWER), r.json()
        assert api.client.get(f"/v1/documents/{doc['id']}").json()["status"] == "undone"
