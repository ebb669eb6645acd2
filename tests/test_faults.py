"""Faults during a stream of facts: worker SIGKILL mid-batch, an API replica restart, a Redis crash.

Real redis-server (append-only, fsync always), real worker and API processes, tiny model. At the
end every acknowledged fact is learned exactly once, versions have no holes, and both replicas
converge on the newest version.
"""

import json
import signal
import threading
import time

import httpx
import pytest

from model.snapshot import MemoryDelta
from tests.conftest import TINY_DOCS, tiny_service_env
from tests.processes import Api, RedisServer, start_worker, stop, wait_status
from worker.store import RedisStore

pytestmark = pytest.mark.slow
N_FACTS = 40


class Teacher(threading.Thread):
    """Posts facts at a steady rate, alternating replicas, retrying each with its client_id until a 202."""

    def __init__(self, apis: list[Api]) -> None:
        super().__init__(daemon=True)
        self.apis, self.acknowledged, self.retries = apis, [], 0

    def run(self) -> None:
        for i in range(N_FACTS):
            body = {"text": f"The lighthouse number {i} stands on Cape Orvin.", "client_id": f"fault-{i}"}
            while True:
                api = self.apis[i % len(self.apis)]
                try:
                    r = httpx.post(f"{api.url}/v1/facts", json=body, timeout=10)
                    if r.status_code == 202:
                        self.acknowledged.append(r.json()["facts"][0]["id"])
                        break
                    assert r.status_code == 503, r.text  # only "Redis away, retry" is acceptable
                except httpx.TransportError:
                    pass  # that replica is restarting
                self.retries += 1
                time.sleep(0.2)
            time.sleep(0.25)


def test_nothing_acknowledged_is_lost_through_worker_api_and_redis_crashes(tiny_model_dir, tmp_path):
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    background = tmp_path / "background.txt"
    background.write_text("\n\n".join(TINY_DOCS))
    env = {**tiny_service_env(tiny_model_dir, server.url, background, tmp_path / "data"),
           "SMFT_STEPS": "150", "SMFT_BATCH_FACTS": "2", "SMFT_SNAPSHOT_EVERY_VERSIONS": "1000"}
    log = tmp_path / "service.log"
    worker = start_worker(env, log)
    apis = [Api(env, log), Api(env, log)]
    events = {}
    try:
        for api in apis:
            api.wait_ready()
        teacher = Teacher(apis)
        teacher.start()
        time.sleep(3)
        worker.send_signal(signal.SIGKILL)  # mid-batch: 150 steps per batch keep it busy
        worker.wait()
        before = RedisStore.connect(server.url)
        events["worker_killed_at_version"] = before.published_version()
        events["training_when_killed"] = sum(before.fact_record(f)["status"] == "training"
                                             for f in list(teacher.acknowledged))
        # The restarted worker only has to finish the stream: fewer steps per batch (what it learns is not checked).
        worker = start_worker({**env, "SMFT_STEPS": "20"}, log)
        time.sleep(3)
        apis[1].stop()  # an API replica restarts
        apis[1] = Api(env, log)
        teacher.apis = apis
        time.sleep(3)
        server.kill()  # Redis crashes; append-only file fsynced on every write
        time.sleep(1)
        server.start()
        teacher.join(timeout=120)
        assert not teacher.is_alive()
        for fact_id in teacher.acknowledged:
            wait_status(apis[0], fact_id, "learned", timeout=240)

        p = RedisStore.connect(server.url)
        deltas = [MemoryDelta.from_bytes(d) for _, d in p.deltas_after(0)]
        taught = [f for d in deltas for f in d.fact_ids]
        assert len(teacher.acknowledged) == N_FACTS
        assert sorted(taught) == sorted(teacher.acknowledged)  # every acknowledged fact exactly once
        assert [d.version for d in deltas] == list(range(1, p.published_version() + 1))  # no holes
        assert p.queue_depth() == 0
        apis[1].wait_ready()
        published = p.published_version()
        for api in apis:
            q = api.client.post("/v1/query", json={"question": "Which cape?", "min_version": published,
                                                   "max_new_tokens": 4, "wait_s": 30})
            assert q.status_code == 200 and q.json()["memory_version"] == published
        events.update(acknowledged=len(teacher.acknowledged), learned_once=len(set(taught)), versions=published,
                      client_retries=teacher.retries)
        print("FAULTS", json.dumps(events))
    finally:
        for api in apis:
            api.stop()
        stop(worker)
        server.stop()


def test_answers_keep_coming_from_the_memory_held_while_redis_is_away(tiny_model_dir, tmp_path):
    """Redis frozen (SIGSTOP: connections hang, as behind a black-holed network) and then gone: questions
    and chats are answered from the memory the replica holds, probes answer, writes say 503."""
    server = RedisServer(tmp_path / "redis").start()
    background = tmp_path / "background.txt"
    background.write_text("\n\n".join(TINY_DOCS))
    env = tiny_service_env(tiny_model_dir, server.url, background, tmp_path / "data")
    log = tmp_path / "service.log"
    worker = start_worker(env, log)
    api = Api(env, log)
    chat = {"model": "smft", "max_tokens": 4, "messages": [{"role": "user", "content": "Which cape?"}]}
    try:
        api.wait_ready()
        for away in ("frozen", "stopped"):
            if away == "frozen":
                server.proc.send_signal(signal.SIGSTOP)
            else:
                server.proc.send_signal(signal.SIGCONT)
                server.kill()
            q = api.client.post("/v1/query", json={"question": "Which cape?", "max_new_tokens": 4})
            assert q.status_code == 200 and q.json()["memory_version"] == 0, (away, q.text)
            assert api.client.post("/v1/chat/completions", json=chat).status_code == 200, away
            assert api.client.get("/healthz").status_code == 200, away
            r = api.client.post("/v1/facts", json={"text": "The lighthouse stands on Cape Orvin."})
            assert r.status_code == 503 and "nothing was stored" in r.json()["detail"], (away, r.text)
    finally:
        if server.proc and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        api.stop()
        stop(worker)
        server.stop()
