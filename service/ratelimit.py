"""Per-client teaching rate limits: a token bucket in Redis, so every API replica shares it.

Each fact costs one token; a client holds at most `burst` tokens and regains `rate` per minute.
Redis' own clock is used, so replicas on different machines agree.
"""

from __future__ import annotations

import math

import redis

from worker.protocol import Keys

# KEYS: bucket; ARGV: tokens per second, burst, cost. Returns {allowed, milliseconds until it would be}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait}
"""


class RateLimiter:
    def __init__(self, client: redis.Redis, keys: Keys, per_min: float, burst: int) -> None:
        self.keys, self.per_s, self.burst = keys, per_min / 60.0, burst
        self._take = client.register_script(_TAKE)

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    def take(self, client_id: str, cost: int) -> float | None:
        """None when `cost` facts may go now; otherwise seconds until they may (for Retry-After)."""
        if not self.enabled:
            return None
        allowed, wait_ms = self._take(keys=[self.keys.rate(client_id)], args=[self.per_s, self.burst, cost])
        return None if allowed else max(1.0, math.ceil(int(wait_ms) / 1000))
