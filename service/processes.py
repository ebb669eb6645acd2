"""Starting and stopping the parts as processes: redis-server, the worker, API replicas.

One helper for everything that runs the service as separate processes: `smft serve`, the service
benchmark and the tests. Worker and API read their settings from SMFT_* variables in `env`.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from worker.store import UNAVAILABLE, RedisStore

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on loopback with append-only persistence, fsynced on every write (a fact
    acknowledged with 202 survives a crash of Redis too). It can be killed and restarted on the same
    port and directory, as a crash and a restart would."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory, self.port = directory, port or free_port()
        # Another local user could otherwise reach it on loopback. The password goes in a config file
        # only its owner can read (never on the command line, which `ps` shows to everyone) and to the
        # worker and API in their environment.
        self.password = secrets.token_urlsafe(24)
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/setup.sh (installs Debian's redis-server) "
                               "or set SMFT_REDIS_URL to an existing Redis")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # its files hold every fact taught
        config = self.directory / "redis.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory.resolve()}\nappendonly yes\n"
                          f"appendfsync always\nsave \"\"\nprotected-mode yes\nrequirepass {self.password}\n")
        self.proc = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL)
        store = RedisStore.connect(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    store.ping()
                    return self
                except UNAVAILABLE:  # not listening yet, or still loading its append-only file
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited with code {self.proc.returncode}") from None
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer within {timeout_s:g} s") from None
                    time.sleep(0.05)
        finally:
            store.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop(self.proc, "redis-server", grace_s=10)


def start_worker(env: dict[str, str], log_to: IO | None = None, burst: bool = False,
                 cwd: Path | None = None) -> subprocess.Popen:
    """`python -m worker`: the training worker (SMFT_* in `env`); with `burst`, it drains the queue and exits."""
    return subprocess.Popen([sys.executable, "-m", "worker", *(["--burst"] if burst else [])], env=env, cwd=cwd,
                            stdout=log_to, stderr=subprocess.STDOUT if log_to else None)


def start_api(env: dict[str, str], port: int, log_to: IO | None = None, cwd: Path | None = None,
              host: str = "127.0.0.1") -> subprocess.Popen:
    """`python -m service`: one API replica on `host:port` (SMFT_* in `env`)."""
    env = {**env, "SMFT_HOST": host, "SMFT_PORT": str(port)}
    return subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=cwd, stdout=log_to,
                            stderr=subprocess.STDOUT if log_to else None)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Until `url`/readyz answers 200 (model loaded, caught up with the worker)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {timeout_s:g}s")


def stop(proc: subprocess.Popen | None, name: str = "process", grace_s: float = 20) -> None:
    """SIGTERM, then SIGKILL if it is still busy after `grace_s` (a worker finishes the step it computes)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %gs; killing it", name, grace_s)
        proc.kill()
        proc.wait(10)
