"""Per-client teaching rate limits: a token bucket in Redis (`RedisStore.take_tokens`), shared by every
API replica.

Each fact costs one token; a client holds at most `burst` tokens and regains `rate` per minute.
"""

from __future__ import annotations

import math

from worker.store import RedisStore


class RateLimiter:
    def __init__(self, store: RedisStore, per_min: float, burst: int) -> None:
        self.store, self.per_s, self.burst = store, per_min / 60.0, burst

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    def take(self, client_id: str, cost: int) -> float | None:
        """None when `cost` facts may go now; otherwise seconds until they may (for Retry-After)."""
        if not self.enabled:
            return None
        allowed, wait_ms = self.store.take_tokens(client_id, self.per_s, self.burst, cost)
        return None if allowed else max(1.0, math.ceil(wait_ms / 1000))
