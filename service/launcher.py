"""`smft serve`: a private redis-server (when no Redis URL is set), the worker and the API, supervised."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from service.settings import ApiSettings

log = logging.getLogger(__name__)
WORKER_RESTARTS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(data_dir: Path, port: int) -> subprocess.Popen:
    """redis-server on loopback, append-only persistence in data_dir/redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: run scripts/setup.sh (installs Debian's redis-server) "
                         "or set SMFT_REDIS_URL to an existing Redis")
    directory = (data_dir / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                             # fsync every write: a fact acknowledged with 202 survives a crash of Redis too
                             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                             "--protected-mode", "yes"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None:
                raise SystemExit(f"redis-server exited with code {proc.returncode}") from None
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("redis-server did not answer within 10 s")


def stop(proc: subprocess.Popen | None, name: str, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %gs; killing it", name, timeout)
        proc.kill()
        proc.wait()


def serve(settings: ApiSettings) -> int:
    redis_proc = None
    env = dict(os.environ)
    env["SMFT_DATA_DIR"] = str(settings.data_dir)
    env["SMFT_MODEL"] = settings.model
    env["SMFT_DEVICE"] = settings.device
    if settings.redis_url:
        env["SMFT_REDIS_URL"] = settings.redis_url
    else:
        port = free_port()
        redis_proc = start_redis(settings.data_dir, port)
        env["SMFT_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        log.info("private redis-server on 127.0.0.1:%d (data in %s)", port, settings.data_dir / "redis")
    cli = [sys.executable, "-m", "service.cli"]
    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker = subprocess.Popen([*cli, "worker"], env=env)
    api = subprocess.Popen([*cli, "api", "--host", settings.host, "--port", str(settings.port)], env=env)
    restarts, code = 0, 0
    log.info("serving on http://%s:%d (Ctrl-C stops Redis, worker and API)", settings.host, settings.port)
    try:
        while not stopping:
            time.sleep(0.5)
            if api.poll() is not None:
                log.error("the API exited with code %s; stopping", api.returncode)
                code = 1
                break
            if worker.poll() is not None:
                if restarts >= WORKER_RESTARTS:
                    log.error("the worker exited %d times; stopping", restarts + 1)
                    code = 1
                    break
                restarts += 1
                log.warning("the worker exited with code %s; restarting it (%d)", worker.returncode, restarts)
                worker = subprocess.Popen([*cli, "worker"], env=env)
    finally:
        stop(api, "api")
        stop(worker, "worker", timeout=60)
        stop(redis_proc, "redis-server")
        log.info("stopped")
    return code
