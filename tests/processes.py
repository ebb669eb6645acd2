"""Run `smft worker` and `smft api` as real processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from service.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker", *extra], env={**os.environ, **env},
                            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


class Api:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "api", "--port", str(self.port)],
                                     env={**os.environ, **env}, cwd=ROOT, stdout=log.open("ab"),
                                     stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited with {self.proc.returncode}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("api not ready")

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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.client.get(f"/v1/facts/{fact_id}").json()
        if body["status"] == status:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"fact {fact_id} not {status}: {body}")


def stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still busy (a worker finishes what it computes first), so no test
    leaves a process behind to slow the ones after it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class RedisServer:
    """A private redis-server with append-only persistence, fsynced on every write; it can be killed and
    restarted on the same port and directory, as a crash and a restart would."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory, self.port = directory, port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
