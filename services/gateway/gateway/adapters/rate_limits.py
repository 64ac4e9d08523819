"""Redis-backed rate limits with the `limits` library (async storage, sliding window counter:
one Lua round trip per hit, shared by every gateway replica)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter


def storage_uri(redis_url: str) -> str:
    """`redis://…` (the services' setting) → `async+redis://…` (the limits library's scheme)."""
    return redis_url if redis_url.startswith("async+") else "async+" + redis_url


class RedisRateLimiter:
    """`on_refused(limit)` is told of every refusal (the gateway counts them per limit)."""

    def __init__(self, redis_url: str, key_prefix: str, limits: dict[str, str],
                 on_refused: Callable[[str], None] = lambda limit: None) -> None:
        self.on_refused = on_refused
        self.storage = RedisStorage(storage_uri(redis_url), implementation="redispy", key_prefix=key_prefix)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self.limits: dict[str, list[RateLimitItem]] = {name: parse_many(spec) for name, spec in limits.items()}

    async def hit(self, limit: str, key: str) -> int | None:
        for item in self.limits[limit]:
            if not await self.strategy.hit(item, limit, key):
                stats = await self.strategy.get_window_stats(item, limit, key)
                self.on_refused(limit)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None
