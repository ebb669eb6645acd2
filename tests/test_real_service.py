"""The issue's walk-through on the real model: real Redis, real worker and API processes, HTTP."""

import shutil
import time

import pytest

from model.evaluation import contains_answer
from tests.conftest import REAL_ANSWER, REAL_FACT, REAL_QUESTION
from tests.processes import Api, start_worker, stop, wait_status
from worker.replica import version_path
from worker.store import RedisStore

pytestmark = pytest.mark.integration


def test_fact_unknown_before_is_answered_after_it_is_learned(real_v0, redis_url, tmp_path):
    _, _, _, v0_path = real_v0
    data = tmp_path / "data"
    # Start from the prepared version 0 (as after a first run) to spare the two-minute preparation.
    version_path(data / "snapshots", 0).parent.mkdir(parents=True)
    shutil.copy(v0_path, version_path(data / "snapshots", 0))
    p = RedisStore.connect(redis_url)
    p.init_version()
    p.set_snapshot(0)
    env = {"SMFT_REDIS_URL": redis_url, "SMFT_DATA_DIR": str(data), "SMFT_MONITOR_EVERY_VERSIONS": "1"}
    log = tmp_path / "service.log"
    worker = start_worker(env, log)
    api = Api(env, log)
    try:
        api.wait_ready(timeout=300)
        before = api.client.post("/v1/query", json={"question": REAL_QUESTION}).json()
        assert before["memory_version"] == 0
        assert not contains_answer(before["answer"], REAL_ANSWER), before
        r = api.client.post("/v1/facts", json={"text": REAL_FACT.text, "paraphrases": list(REAL_FACT.paraphrases)})
        assert r.status_code == 202
        fact_id = r.json()["facts"][0]["id"]
        learned = wait_status(api, fact_id, "learned", timeout=300)
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
        assert monitor["baseline"]["probe_answered"] > 0.9 and latest["probe_answered"] > 0.5
        assert 0 < latest["slots_updated"] <= 500
    finally:
        api.stop()
        stop(worker)
