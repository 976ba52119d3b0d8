"""Who owns a PBX: a lease in Redis with a fencing token.

Several backend instances may run behind a load balancer; for each PBX exactly
one owns the AMI stream, the IVR and the heartbeat. The lease is a Redis key
holding ``<instance>:<fence>`` with a TTL; the fence is a counter incremented
on every acquisition, so a newer owner always holds a larger fence. The owner
renews well before the TTL; a dead owner's lease simply expires and another
instance takes over within ``ttl`` seconds.

A stale owner (paused by GC, cut off from Redis) must not steer calls: every
write to the PBX goes through :meth:`PbxLease.check`, which refuses once the
local deadline (acquire/renew time + TTL - safety margin, on the monotonic
clock) has passed or a renewal found the key taken. The deadline is counted
from *before* the Redis request was sent, so local belief never outlives the
lease in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from .errors import NotOwner

log = logging.getLogger(__name__)

# KEYS[1] lease key, KEYS[2] fence counter; ARGV[1] instance id, ARGV[2] ttl ms.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local holder = string.match(current, '^(.*):%d+$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.match(current, ':(%d+)$'))
  end
  return nil
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
"""

# KEYS[1] lease key; ARGV[1] "<instance>:<fence>", ARGV[2] ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

OwnershipHook = Callable[[int], Awaitable[None]]
LossHook = Callable[[], Awaitable[None]]


class PbxLease:
    def __init__(
        self,
        redis: Redis,
        node: str,
        instance_id: str,
        *,
        ttl_s: float = 6.0,
        prefix: str = "callcenter:",
        margin_s: float = 1.0,
    ) -> None:
        if margin_s >= ttl_s:
            raise ValueError("the safety margin must be shorter than the lease")
        self._redis = redis
        self.node = node
        self.instance_id = instance_id
        self.ttl_s = ttl_s
        self.margin_s = margin_s
        self._key = f"{prefix}pbx:{node}:owner"
        self._fence_key = f"{prefix}pbx:{node}:fence"
        self.fence: int | None = None
        self._deadline = 0.0
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self.fence is not None and time.monotonic() < self._deadline

    def check(self) -> None:
        """Raise :class:`NotOwner` unless this instance surely holds the lease now."""
        if not self.held:
            raise NotOwner(f"this instance does not own PBX {self.node}")

    async def try_acquire(self) -> int | None:
        """Take (or keep) the lease; returns the fence, or None if another owns it."""
        sent = time.monotonic()
        fence = await self._acquire(
            keys=[self._key, self._fence_key],
            args=[self.instance_id, int(self.ttl_s * 1000)],
        )
        if fence is None:
            self.fence = None
            return None
        self.fence = int(fence)
        self._deadline = sent + self.ttl_s - self.margin_s
        return self.fence

    async def renew(self) -> bool:
        if self.fence is None:
            return False
        sent = time.monotonic()
        ok = await self._renew(
            keys=[self._key], args=[f"{self.instance_id}:{self.fence}", int(self.ttl_s * 1000)]
        )
        if ok:
            self._deadline = sent + self.ttl_s - self.margin_s
            return True
        self.fence = None
        return False

    async def release(self) -> None:
        if self.fence is None:
            return
        token = f"{self.instance_id}:{self.fence}"
        self.fence = None
        with contextlib.suppress(Exception):
            await self._release(keys=[self._key], args=[token])

    async def owner(self) -> tuple[str, int] | None:
        """Who holds the lease now (instance id, fence), as Redis says."""
        value = await self._redis.get(self._key)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        holder, _, fence = text.rpartition(":")
        return holder, int(fence)


class LeaseKeeper:
    """Campaigns for a PBX's lease and keeps it; runs hooks when ownership changes.

    ``on_acquired(fence)`` starts the owner's work (AMI stream, IVR, heartbeat);
    ``on_lost()`` stops it at once. Renewals happen every ``ttl/3``; a renewal
    that fails or errors counts as lost.
    """

    def __init__(
        self, lease: PbxLease, *, on_acquired: OwnershipHook, on_lost: LossHook
    ) -> None:
        self.lease = lease
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.owning = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.lease.node}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.owning:
            self.owning = False
            await self._on_lost()
        await self.lease.release()

    async def _run(self) -> None:
        interval = self.lease.ttl_s / 3
        while True:
            try:
                if self.owning:
                    still = await self.lease.renew()
                else:
                    still = await self.lease.try_acquire() is not None
            except Exception as exc:  # noqa: BLE001 - Redis away: we cannot prove ownership
                log.warning("lease for %s: %s", self.lease.node, type(exc).__name__)
                still = False
                if not self.owning:
                    await asyncio.sleep(interval)
                    continue
            if still and not self.owning:
                self.owning = True
                log.info("took ownership of PBX %s (fence %s)", self.lease.node, self.lease.fence)
                await self._on_acquired(self.lease.fence or 0)
            elif not still and self.owning:
                self.owning = False
                log.warning("lost ownership of PBX %s", self.lease.node)
                await self._on_lost()
            await asyncio.sleep(interval)
