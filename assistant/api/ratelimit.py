"""Per-key rate limits: a token bucket per API key.

`burst` requests may come at once; the bucket refills at `per_minute / 60` tokens a second. With a Redis URL the
buckets live in Redis (one atomic Lua script per request, Redis' own clock), so every API worker and host shares
them; without, they live in this process. If Redis cannot be reached the limiter falls back to in-process
buckets (logged once) rather than refusing every request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("jinro.api")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until one token is available (when refused)
    remaining: float = 0.0


class RateLimiter(Protocol):
    def take(self, key: str, cost: float = 1.0) -> Decision: ...


class Unlimited:
    def take(self, key: str, cost: float = 1.0) -> Decision:
        return Decision(True, 0.0, float("inf"))


class LocalBuckets:
    """In-process token buckets (one per key), thread-safe."""

    def __init__(self, per_minute: float, burst: int, *, clock=time.monotonic) -> None:
        self.rate, self.capacity, self.clock = per_minute / 60.0, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> Decision:
        now = self.clock()
        with self._lock:
            tokens, ts = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - ts) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return Decision(True, 0.0, tokens - cost)
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets rather than grow without bound
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.capacity}
        return Decision(False, (cost - tokens) / self.rate if self.rate > 0 else 3600.0, tokens)


_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or capacity
local ts = tonumber(data[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
elseif rate > 0 then
  retry = (cost - tokens) / rate
else
  retry = 3600
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local ttl = 60000
if rate > 0 then ttl = math.ceil(capacity / rate * 1000) + 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, tostring(retry), tostring(tokens)}
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every process using the same Redis and namespace."""

    def __init__(self, url: str, per_minute: float, burst: int, *, namespace: str = "jinro:ratelimit") -> None:
        import redis

        self.rate, self.capacity, self.namespace = per_minute / 60.0, float(burst), namespace
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_LUA)
        self._fallback = LocalBuckets(per_minute, burst)
        self._warned = False
        self.url = url

    def take(self, key: str, cost: float = 1.0) -> Decision:
        import redis

        try:
            allowed, retry, tokens = self._script(keys=[f"{self.namespace}:{key}"], args=[self.capacity, self.rate, cost])
        except redis.RedisError as exc:
            if not self._warned:
                self._warned = True
                log.warning("rate limiter: Redis unreachable (%s); using in-process buckets until it is back", exc)
            return self._fallback.take(key, cost)
        if self._warned:
            self._warned = False
            log.warning("rate limiter: Redis is back")
        return Decision(bool(int(allowed)), float(retry), float(tokens))


def build_limiter(per_minute: float, burst: int, redis_url: str | None, *,
                  namespace: str = "jinro:ratelimit") -> RateLimiter:
    if per_minute <= 0 or burst <= 0:
        return Unlimited()
    if redis_url:
        return RedisBuckets(redis_url, per_minute, burst, namespace=namespace)
    return LocalBuckets(per_minute, burst)
