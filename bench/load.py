"""A bounded load test against a running service: concurrent query clients plus a teaching stream.

Each phase runs for a fixed time; every request's latency and status is kept, so the report holds
exact percentiles, throughput and every error (a non-2xx answer or a transport failure).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field

import httpx

from bench.report import percentile

QUESTIONS = ("What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
             "What is the boiling point of water?", "What is the largest planet in the solar system?",
             "Who painted the Mona Lisa?", "What language is spoken in Brazil?",
             "What is the chemical symbol for gold?")


@dataclass(frozen=True)
class LoadConfig:
    clients: int = 8
    duration_s: float = 60.0
    max_new_tokens: int = 20
    teach_every_s: float | None = 2.0  # None: queries only
    token: str | None = None


@dataclass
class PhaseReport:
    name: str
    clients: int
    seconds: float
    queries: int
    query_errors: int
    p50_ms: float
    p99_ms: float
    queries_per_s: float
    facts_sent: int
    teach_errors: int
    facts_learned: int  # of those sent, learned by the end of the phase
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def run_phase(base_url: str, name: str, config: LoadConfig) -> PhaseReport:
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    fact_ids: list[str] = []
    teach_errors = 0

    def query_client(n: int) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
            i = n
            while not stop.is_set():
                question = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                start = time.perf_counter()
                try:
                    r = client.post("/v1/query", json={"question": question, "max_new_tokens": config.max_new_tokens})
                    problem = None if r.status_code == 200 else f"query {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"query {type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(elapsed)

    def teacher() -> None:
        nonlocal teach_errors
        assert config.teach_every_s is not None
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
            i = 0
            while not stop.wait(0 if i == 0 else config.teach_every_s):
                text = f"The load-test beacon {name}-{i} was lit by Ilsa Varn in {1900 + i % 100}."
                i += 1
                try:
                    r = client.post("/v1/facts", json={"text": text})
                    if r.status_code == 202:
                        fact_ids.append(r.json()["facts"][0]["id"])
                        continue
                    problem = f"teach {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"teach {type(exc).__name__}: {exc}"
                with lock:
                    teach_errors += 1
                    errors.append(problem)

    threads = [threading.Thread(target=query_client, args=(n,), daemon=True) for n in range(config.clients)]
    if config.teach_every_s is not None:
        threads.append(threading.Thread(target=teacher, daemon=True))
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(config.duration_s)
    stop.set()
    for t in threads:
        t.join(timeout=180)
    seconds = time.perf_counter() - start
    learned = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for fact_id in fact_ids:
            learned += client.get(f"/v1/facts/{fact_id}").json().get("status") == "learned"
    return PhaseReport(
        name=name, clients=config.clients, seconds=round(seconds, 2), queries=len(latencies),
        query_errors=len(errors) - teach_errors, p50_ms=round(statistics.median(latencies), 1) if latencies else 0.0,
        p99_ms=round(percentile(latencies, 0.99), 1), queries_per_s=round(len(latencies) / seconds, 2),
        facts_sent=len(fact_ids), teach_errors=teach_errors, facts_learned=learned, errors=errors[:20],
    )
