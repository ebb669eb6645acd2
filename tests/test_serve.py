"""`smft serve`: private Redis, worker and API come up together and stop cleanly on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from service.processes import free_port
from tests.processes import ROOT

pytestmark = pytest.mark.slow  # many real processes


def test_serve_starts_everything_and_stops_cleanly(tiny_env, tmp_path):
    env = {k: v for k, v in tiny_env.items() if k != "SMFT_REDIS_URL"}  # no Redis URL: serve starts its own
    port = free_port()
    # A flag reaches the worker that serve starts: --steps 2 over SMFT_STEPS=3 in the environment.
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port), "--steps", "2"],
                            env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("smft serve did not become ready")
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "-m worker" in names and "-m service" in names
        fact = client.post("/v1/facts", json={"text": "Serve learns this fact quickly."}).json()["facts"][0]["id"]
        for _ in range(300):
            if client.get(f"/v1/facts/{fact}").json()["status"] == "learned":
                break
            time.sleep(0.1)
        learned = client.get(f"/v1/facts/{fact}").json()
        assert learned["status"] == "learned" and learned["steps"] == 2
        # A worker that dies is restarted (after a short wait) and goes on learning; the API never stops.
        worker = next(c for c in children if "-m worker" in " ".join(c.cmdline()))
        worker.kill()
        again = client.post("/v1/facts", json={"text": "Serve learns after its worker died."}).json()["facts"][0]["id"]
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and client.get(f"/v1/facts/{again}").json()["status"] != "learned":
            time.sleep(0.2)
        assert client.get(f"/v1/facts/{again}").json()["status"] == "learned"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()  # append-only persistence
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()


def test_a_failing_worker_is_restarted_with_growing_waits_for_as_long_as_it_takes():
    from service.launcher import Backoff

    backoff = Backoff(first_s=1, longest_s=8, stable_s=300)
    assert [backoff.after_run(2) for _ in range(6)] == [1, 2, 4, 8, 8, 8]  # no limit on restarts
    assert backoff.after_run(600) == 1  # a long run was not a crash loop: back to the first wait
    assert backoff.after_run(2) == 2
