"""Worker and API replicas as real processes for end-to-end tests, on the service's process helper."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from service.processes import RedisServer, free_port, start_api, wait_ready
from service.processes import start_worker as _start_worker
from service.processes import stop as _stop

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["ROOT", "Api", "RedisServer", "running_service", "start_worker", "stop", "wait_status"]


def start_worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """The worker (`--burst` in `extra`: drain the queue and exit), its output appended to `log`."""
    return _start_worker({**os.environ, **env}, log.open("ab"), burst="--burst" in extra, cwd=ROOT)


class Api:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_api({**os.environ, **env}, self.port, log.open("ab"), cwd=ROOT)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout: float = 120) -> None:
        wait_ready(self.url, self.proc, timeout)

    def stop(self) -> None:
        self.client.close()
        stop(self.proc, grace_s=20)


@contextmanager
def running_service(env: dict[str, str], log: Path) -> Iterator[tuple[dict[str, str], Api, subprocess.Popen, Path]]:
    """A worker and one ready API replica; (env, api, worker, log) while open, both stopped after."""
    worker = start_worker(env, log)
    api = Api(env, log)
    try:
        api.wait_ready()
        yield env, api, worker, log
    finally:
        api.stop()
        stop(worker)


def wait_status(api: Api, fact_id: str, status: str, timeout: float = 120) -> dict:
    deadline, pause = time.monotonic() + timeout, 0.05
    while time.monotonic() < deadline:
        body = api.client.get(f"/v1/facts/{fact_id}").json()
        if body["status"] == status:
            return body
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)  # a real-model wait of minutes must not keep the API busy answering polls
    raise TimeoutError(f"fact {fact_id} not {status}: {body}")


def stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still busy, so no test leaves a process behind to slow the ones after it."""
    _stop(proc, grace_s=grace_s)
