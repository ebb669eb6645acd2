"""`smft serve`: a private redis-server (when no Redis URL is set), the worker and the API, supervised."""

from __future__ import annotations

import json
import logging
import os
import signal
import time

from service.processes import RedisServer, free_port, start_api, start_worker, stop
from service.settings import ServeSettings

log = logging.getLogger(__name__)


class Backoff:
    """How long to wait before restarting a worker that exited: doubling from `first_s` up to `longest_s`,
    and back to `first_s` once a run lasted `stable_s` (a crash after days is not a crash loop)."""

    def __init__(self, first_s: float = 1.0, longest_s: float = 60.0, stable_s: float = 300.0) -> None:
        self.first_s, self.longest_s, self.stable_s = first_s, longest_s, stable_s
        self._next = first_s

    def after_run(self, ran_s: float) -> float:
        if ran_s >= self.stable_s:
            self._next = self.first_s
        wait, self._next = self._next, min(self._next * 2, self.longest_s)
        return wait


def child_env(settings: ServeSettings) -> dict[str, str]:
    """The environment of the worker and the API: this one, plus every setting given on the command line
    as its SMFT_* variable, so `smft serve --batch-facts 1` reaches the worker."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json", include=settings.model_fields_set).items():
        env[f"SMFT_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["SMFT_DATA_DIR"], env["SMFT_MODEL"], env["SMFT_DEVICE"] = str(settings.data_dir), settings.model, \
        settings.device
    return env


def serve(settings: ServeSettings) -> int:
    redis_server = None
    env = child_env(settings)
    if not settings.redis_url:
        redis_server = RedisServer(settings.data_dir / "redis", free_port())
        try:
            redis_server.start()
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc
        env["SMFT_REDIS_URL"] = redis_server.url
        log.info("private redis-server on 127.0.0.1:%d (data in %s)", redis_server.port,
                 settings.data_dir / "redis")
    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker = start_worker(env)
    api = start_api(env, settings.port, host=settings.host)
    backoff, started, restart_at, code = Backoff(), time.monotonic(), None, 0
    log.info("serving on http://%s:%d (Ctrl-C stops Redis, worker and API)", settings.host, settings.port)
    try:
        while not stopping:
            time.sleep(0.5)
            if api.poll() is not None:
                log.error("the API exited with code %s; stopping", api.returncode)
                code = 1
                break
            # A worker that keeps failing is restarted, with growing waits, for as long as it takes: the
            # API goes on answering from the memory it holds, and facts wait in Redis.
            if restart_at is None and worker.poll() is not None:
                ran = time.monotonic() - started
                wait = backoff.after_run(ran)
                log.error("the worker exited with code %s after %.0f s; restarting it in %.0f s",
                          worker.returncode, ran, wait)
                restart_at = time.monotonic() + wait
            if restart_at is not None and time.monotonic() >= restart_at:
                worker, started, restart_at = start_worker(env), time.monotonic(), None
    finally:
        stop(api, "api")
        stop(worker, "worker", grace_s=60)
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")
    return code
