"""The fact-to-answer path through the real service: private Redis, the worker, two API replicas.

Facts are posted at a steady rate to replica A. For each: the time from the 202 to status
`learned`, and to the answer of a query sent right after the 202 with `after_fact` (it waits
until the fact is learned and applied, then generates); the time from the worker publishing the
version to replica B applying it (both clocks are this machine's). Then a burst measures facts
learned per minute at saturation, and the resident memory of the worker and an API replica.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.facts import generate_facts
from bench.load import LoadConfig, run_phase
from bench.report import percentile
from model.evaluation import contains_answer
from service.processes import RedisServer, free_port, start_api, start_worker, stop, wait_ready


@dataclass(frozen=True)
class ServiceBenchConfig:
    facts: int = 10
    every_s: float = 15.0  # slower than learning, so latency is not queueing
    burst: int = 8
    load_clients: int = 8
    load_seconds: float = 30.0  # per phase: queries alone, then with a teaching stream (0: skip)
    env: dict[str, str] = field(default_factory=dict)  # SMFT_* for worker and replicas
    ready_timeout_s: float = 900.0


def _pct(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1)


def _wait_drained(client: httpx.Client, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/v1/status").json()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.5)


def _status(client: httpx.Client, fact_id: str) -> dict:
    return client.get(f"/v1/facts/{fact_id}").json()


def run_service_bench(config: ServiceBenchConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(config.env.get("SMFT_DATA_DIR") or tmp)
        redis_server = RedisServer(data / "redis").start()
        env = {**os.environ, "SMFT_MONITOR_EVERY_VERSIONS": "0", **config.env,
               "SMFT_DATA_DIR": str(data), "SMFT_REDIS_URL": redis_server.url}
        log = (data / "bench.log").open("ab")
        worker = start_worker(env, log)
        ports = [free_port(), free_port()]
        apis = [start_api(env, p, log) for p in ports]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            for url, proc in zip(urls, apis, strict=True):
                wait_ready(url, proc, config.ready_timeout_s)
            return _measure(config, urls, worker, apis)
        finally:
            for proc, name in ((apis[0], "api"), (apis[1], "api"), (worker, "worker")):
                stop(proc, name)
            redis_server.stop()
            log.close()


def _measure(config: ServiceBenchConfig, urls: list[str], worker: subprocess.Popen,
             apis: list[subprocess.Popen]) -> dict:
    a, b = httpx.Client(base_url=urls[0], timeout=600), httpx.Client(base_url=urls[1], timeout=60)
    facts = generate_facts(config.facts + config.burst, seed=7)
    to_learned, to_answer, propagation, correct = [], [], [], 0
    for item in facts[:config.facts]:
        tick = time.monotonic()
        body = {"text": item.fact.text, "paraphrases": list(item.fact.paraphrases)}
        start = time.perf_counter()
        fact_id = a.post("/v1/facts", json=body).json()["facts"][0]["id"]
        answered: dict = {}

        def ask(fact_id: str = fact_id, question: str = item.question, out: dict = answered) -> None:
            r = a.post("/v1/query", json={"question": question, "after_fact": fact_id, "wait_s": 600,
                                          "max_new_tokens": 24})
            out["at"], out["body"] = time.perf_counter(), r.json()

        asker = threading.Thread(target=ask)
        asker.start()
        with httpx.Client(base_url=urls[0], timeout=60) as poll:
            while (record := _status(poll, fact_id))["status"] not in ("learned", "failed"):
                time.sleep(0.02)
        to_learned.append((time.perf_counter() - start) * 1000)
        while (status := b.get("/v1/status").json())["memory_version"] < record["version"]:
            time.sleep(0.002)
        if status["memory_version"] == record["version"] and status.get("memory_applied_at"):
            propagation.append((status["memory_applied_at"] - record["learned_at"]) * 1000)
        asker.join()
        to_answer.append((answered["at"] - start) * 1000)
        correct += contains_answer(answered["body"].get("answer", ""), item.answer)
        time.sleep(max(0.0, config.every_s - (time.monotonic() - tick)))

    # Saturation: a burst, all posted at once; facts learned per minute until the last is learned.
    start = time.perf_counter()
    ids = [a.post("/v1/facts", json={"text": f.fact.text, "paraphrases": list(f.fact.paraphrases)}).json()
           ["facts"][0]["id"] for f in facts[config.facts:]]
    for fact_id in ids:
        while _status(a, fact_id)["status"] not in ("learned", "failed"):
            time.sleep(0.05)
    burst_s = time.perf_counter() - start
    rss = {name: round(psutil.Process(p.pid).memory_info().rss / 2**20, 1)
           for name, p in (("worker", worker), ("api replica", apis[0]))}
    load = []
    if config.load_seconds > 0:  # alone, then while learning; single client, then concurrent clients
        for name, teach_every in (("queries", None), ("queries + teaching", 2.0)):
            for clients in sorted({1, config.load_clients}):
                _wait_drained(a)  # "alone" must not overlap the previous phase's learning
                phase = LoadConfig(clients, config.load_seconds, 20, teach_every)
                load.append(run_phase(urls[0], f"{name}, {clients} client(s)", phase).as_dict())
    return {
        "facts": config.facts, "every_s": config.every_s,
        "fact_to_learned_ms": {"p50": _pct(to_learned, 0.5), "p95": _pct(to_learned, 0.95)},
        "fact_to_answer_ms": {"p50": _pct(to_answer, 0.5), "p95": _pct(to_answer, 0.95)},
        "delta_propagation_ms": {"p50": _pct(propagation, 0.5), "p95": _pct(propagation, 0.95),
                                 "n": len(propagation)},
        "answered_correctly": f"{correct}/{config.facts}",
        "burst": {"facts": len(ids), "seconds": round(burst_s, 1),
                  "facts_per_min": round(len(ids) / burst_s * 60, 1) if ids else 0.0},
        "rss_mb": rss,
        "load": load,
    }
