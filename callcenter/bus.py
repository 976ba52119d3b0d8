"""Publish/subscribe of typed events, in one process or across instances through Redis.

An event is a pydantic model with a class-level ``topic`` (dotted, e.g.
``"queue.caller_joined"``). Subscribers name a topic, an event class, or a glob
(``"queue.*"``) and get the typed event in an async handler.

Delivery guarantees, which the domain code may rely on:

* Each subscription has its own queue and worker task: handlers of one subscription see
  events in publish order; a slow or failing handler never delays or breaks another.
  A handler's exception is logged and the next event is delivered.
* A subscription's queue is bounded (``max_pending``); when a subscriber falls that far
  behind, its oldest events are dropped and counted in ``Subscription.dropped``, because
  blocking the publisher (the AMI reader) would stall every call.
* :class:`RedisBus` delivers locally first, then fans out to the other instances through
  one Redis pub/sub channel. An instance ignores its own messages coming back (by origin
  id), so local subscribers see each event exactly once, even while Redis is down.
  Cross-instance delivery is at-most-once, as Redis pub/sub is: consumers that need
  durability read the database, not the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]


# What losing Redis looks like from redis.asyncio: reconnect, don't crash.
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class BusError(Exception):
    """The bus was used wrongly (not started, closed) or cannot reach its backend."""


class BusEvent(BaseModel):
    """Base of every event carried on the bus; subclasses set ``topic``.

    Defining a subclass registers it, so a receiving instance can decode a payload back
    into the right type by its topic.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: ClassVar[str]

    _registry: ClassVar[dict[str, type[BusEvent]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        topic = cls.__dict__.get("topic")
        if topic is None:
            return  # an abstract intermediate base
        if not isinstance(topic, str) or not topic or any(c in topic for c in "*?[]"):
            raise TypeError(f"{cls.__qualname__}.topic must be a plain non-empty string")
        known = BusEvent._registry.get(topic)
        if known is not None and _qualified(known) != _qualified(cls):
            raise TypeError(
                f"topic {topic!r} is taken by {_qualified(known)}; "
                f"{_qualified(cls)} needs a topic of its own"
            )
        # Same qualified name again is a module reload: the newer class wins.
        BusEvent._registry[topic] = cls

    @staticmethod
    def type_for(topic: str) -> type[BusEvent] | None:
        return BusEvent._registry.get(topic)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _pattern_of(target: str | type[BusEvent]) -> str:
    if isinstance(target, type):
        if not issubclass(target, BusEvent) or "topic" not in target.__dict__:
            raise TypeError(f"{target!r} is not a BusEvent with a topic")
        return target.topic
    if not target:
        raise ValueError("empty topic pattern")
    return target


class Subscription:
    """One handler's place on the bus; ``unsubscribe()`` (or ``await close()``) ends it."""

    def __init__(
        self,
        pattern: str,
        handler: Handler,
        *,
        max_pending: int,
        on_unsubscribe: Callable[[Subscription], None],
    ) -> None:
        self.pattern = pattern
        self.handler = handler
        self.dropped = 0
        self._queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None
        self._on_unsubscribe = on_unsubscribe
        self.active = True

    def matches(self, topic: str) -> bool:
        return fnmatch.fnmatchcase(topic, self.pattern)

    def _start(self) -> None:
        if self._task is None and self.active:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"bus-subscriber:{self.pattern}"
            )

    def _offer(self, event: BusEvent) -> None:
        if not self.active:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "bus subscriber %r is behind; dropped %d event(s) so far",
                    self.pattern,
                    self.dropped,
                )
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never the payload: it may carry a caller's details.
                log.exception(
                    "bus handler %r failed on topic %s", _handler_name(self.handler), event.topic
                )
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every event already offered has been handled."""
        await self._queue.join()

    def unsubscribe(self) -> None:
        if not self.active:
            return
        self.active = False
        self._on_unsubscribe(self)
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self.unsubscribe()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


@runtime_checkable
class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: BusEvent) -> None: ...

    def subscribe(self, target: str | type[BusEvent], handler: Handler) -> Subscription: ...

    async def drain(self) -> None: ...


class InProcessBus:
    """The bus of a single instance: no network, same semantics as :class:`RedisBus`."""

    def __init__(self, *, max_pending: int = 10_000) -> None:
        self._max_pending = max_pending
        self._subscriptions: list[Subscription] = []
        self._started = False
        self._closed = False

    async def __aenter__(self) -> InProcessBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        if self._closed:
            raise BusError("a closed bus cannot be started again")
        self._started = True
        for subscription in self._subscriptions:
            subscription._start()

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()

    def subscribe(self, target: str | type[BusEvent], handler: Handler) -> Subscription:
        if self._closed:
            raise BusError("bus is closed")
        subscription = Subscription(
            _pattern_of(target),
            handler,
            max_pending=self._max_pending,
            on_unsubscribe=self._forget,
        )
        self._subscriptions.append(subscription)
        if self._started:
            subscription._start()
        return subscription

    async def publish(self, event: BusEvent) -> None:
        self._require_running()
        self._deliver(event)

    async def drain(self) -> None:
        """Wait until every subscriber has handled every event published so far."""
        for subscription in list(self._subscriptions):
            await subscription.drain()

    def _deliver(self, event: BusEvent) -> None:
        for subscription in list(self._subscriptions):
            if subscription.matches(event.topic):
                subscription._offer(event)

    def _forget(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _require_running(self) -> None:
        if not self._started:
            raise BusError("bus not started")
        if self._closed:
            raise BusError("bus is closed")


class RedisBus(InProcessBus):
    """Fans events out to every instance sharing one Redis and ``prefix``.

    All topics travel on one channel, ``<prefix>bus``: every instance wants every event
    (wallboards, consoles), and one channel makes the subscriber count observable
    (``PUBSUB NUMSUB``). Messages are JSON ``{"v": 1, "topic", "origin", "event"}``.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        redis_url: str,
        prefix: str = "callcenter:",
        *,
        instance_id: str | None = None,
        max_pending: int = 10_000,
        connect_timeout: float = 5.0,
        reconnect_initial: float = 0.1,
        reconnect_max: float = 5.0,
    ) -> None:
        super().__init__(max_pending=max_pending)
        self.redis_url = redis_url
        self.channel = f"{prefix}bus"
        self.instance_id = instance_id or uuid.uuid4().hex
        self._connect_timeout = connect_timeout
        self._reconnect_initial = reconnect_initial
        self._reconnect_max = reconnect_max
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.reconnects = 0
        self.publish_failures = 0

    @property
    def listening(self) -> bool:
        """True while the pub/sub subscription is in place."""
        return self._listening.is_set()

    async def start(self) -> None:
        """Subscribe; raises :class:`BusError` if Redis cannot be reached at all.

        Failing at start catches a wrong URL at deployment. After that, losing Redis is
        survived: the listener reconnects with backoff for as long as the bus runs.
        """
        import redis.asyncio as redis

        await super().start()
        if self._listener is not None:
            return
        self._redis = redis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self._connect_timeout,
            health_check_interval=30,
        )
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name=f"bus-redis:{self.channel}"
        )
        try:
            await asyncio.wait_for(self._listening.wait(), self._connect_timeout)
        except TimeoutError:
            await self.close()
            raise BusError(
                f"cannot subscribe to Redis at {_safe_url(self.redis_url)} "
                f"within {self._connect_timeout:g}s"
            ) from None

    async def close(self) -> None:
        await super().close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        self._listening.clear()

    async def publish(self, event: BusEvent) -> None:
        self._require_running()
        self._deliver(event)
        payload = json.dumps(
            {
                "v": self.FORMAT_VERSION,
                "topic": event.topic,
                "origin": self.instance_id,
                "event": event.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )
        try:
            await self._redis.publish(self.channel, payload)
        except _CONNECTION_ERRORS as exc:
            self._publish_failed(event, exc)

    def _publish_failed(self, event: BusEvent, exc: BaseException) -> None:
        self.publish_failures += 1
        log.warning(
            "bus: could not fan out %s to other instances (Redis: %s); delivered locally only",
            event.topic,
            type(exc).__name__,
        )

    async def _listen(self) -> None:
        delay = self._reconnect_initial
        while not self._closed:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._listening.set()
                delay = self._reconnect_initial
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
            except _CONNECTION_ERRORS as exc:
                log.warning(
                    "bus: lost Redis subscription (%s); retrying in %.2fs",
                    type(exc).__name__,
                    delay,
                )
            except Exception:
                log.exception("bus: Redis listener failed; resubscribing")
            finally:
                self._listening.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            # redis.asyncio can turn a cancellation during connect into a ConnectionError;
            # honour the cancellation anyway so close() never hangs.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max)

    def _receive(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            topic = message["topic"]
            origin = message["origin"]
            body = message["event"]
        except (ValueError, KeyError, TypeError):
            log.warning("bus: ignoring a malformed message on %s", self.channel)
            return
        if origin == self.instance_id:
            return  # already delivered locally when published
        event_type = BusEvent.type_for(topic)
        if event_type is None:
            # Another instance runs a newer version with an event type we do not know.
            log.info("bus: ignoring unknown topic %r from instance %s", topic, origin)
            return
        try:
            event = event_type.model_validate(body)
        except ValidationError as exc:
            log.warning(
                "bus: ignoring %s from instance %s that does not decode (%d error(s))",
                topic,
                origin,
                exc.error_count(),
            )
            return
        self._deliver(event)


def _safe_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
