"""The leader lease: exactly one worker trains; a standby takes over when the lease expires."""

from __future__ import annotations

import logging
import threading

from worker.store import RedisStore

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, store: RedisStore, owner: str, ttl_s: float) -> None:
        self.store, self.owner, self.ttl_s = store, owner, ttl_s
        self.held = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_acquire(self, stop: threading.Event) -> bool:
        """Block until this worker holds the lease (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            if self.store.acquire_lease(self.owner, self.ttl_s):
                self.held.set()
                self._start_renewing()
                log.info("worker %s holds the lease", self.owner)
                return True
            if not announced:
                log.info("worker %s is on standby: another worker holds the lease", self.owner)
                announced = True
            stop.wait(self.ttl_s / 3)
        return False

    def _start_renewing(self) -> None:
        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(self.ttl_s / 3):
                try:
                    ok = self.store.renew_lease(self.owner, self.ttl_s)
                except Exception:  # not renewed: the lease may expire while we cannot tell, so it counts as lost
                    log.warning("lease renewal failed: counted as lost", exc_info=True)
                    ok = False
                if not ok:
                    log.warning("worker %s lost the lease", self.owner)
                    self.held.clear()
                    return

        self._thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.held.is_set():
            try:
                self.store.release_lease(self.owner)
            except Exception:
                log.warning("could not release the lease", exc_info=True)
        self.held.clear()
