"""Real PostgreSQL and Redis servers for the test suite.

Tests talk to real servers, never to mocks. A server comes from one of two places:

* the environment (``CALLCENTER_TEST_POSTGRES_URL`` / ``CALLCENTER_TEST_REDIS_URL``), which is
  how ``.ci/run`` hands over the servers it started;
* otherwise a throwaway instance started here from the binaries found on the machine
  (``initdb`` + ``pg_ctl`` into a temp dir, ``redis-server`` with persistence off), on a free
  loopback port, stopped when the session ends.

When neither works the reason is kept, so the fixtures can skip (or, under
``CALLCENTER_REQUIRE_SERVICES=1``, fail) with a message that says what was missing.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` system user
(present once Debian's package is installed) or else ``nobody``, with its temp dir chowned.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

POSTGRES_URL_ENV = "CALLCENTER_TEST_POSTGRES_URL"
REDIS_URL_ENV = "CALLCENTER_TEST_REDIS_URL"
REQUIRE_ENV = "CALLCENTER_REQUIRE_SERVICES"

# The role the throwaway cluster is initialised with; trust auth on loopback only.
PG_SUPERUSER = "callcenter"

_T = TypeVar("_T")


class ServiceUnavailable(RuntimeError):
    """A test service could neither be reached nor started; the message says why."""


def services_required(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return env.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def hide_password(url: str) -> str:
    """The URL with any password replaced, for messages and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_binary(name: str) -> str | None:
    """``name`` from PATH, else from Debian's versioned PostgreSQL dirs (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key, reverse=True
    )
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def run_coroutine_in_thread(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion on a private loop in a helper thread.

    Session fixtures are synchronous and may run while pytest-asyncio's loop exists, so
    ``asyncio.run`` on the calling thread is not safe.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="test-services", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- PostgreSQL


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as a DSN asyncpg accepts."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {hide_password(url)}")
    return "postgresql://" + rest


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def check_postgres(url: str, connect_timeout: float = 5.0) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=connect_timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def create_database(server_url: str, prefix: str = "test") -> str:
    """Create an empty database on the server; returns its SQLAlchemy URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(asyncpg_dsn(server_url), timeout=10)
    try:
        # template0: template1 may have been changed by whoever owns a shared server.
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(database_url: str) -> None:
    import asyncpg

    name = urlsplit(database_url).path.lstrip("/")
    admin_url = with_database(database_url, "postgres")
    conn = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        # FORCE (PostgreSQL 13+) ends sessions a failed test left open.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account PostgreSQL runs as when we are root; None if not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceUnavailable("running as root and neither 'postgres' nor 'nobody' exists")


@dataclass
class PostgresInstance:
    """A throwaway PostgreSQL cluster on a loopback port."""

    root: Path
    port: int
    pg_ctl: str
    user: pwd.struct_passwd | None
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"postgresql+asyncpg://{PG_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def stop(self) -> None:
        if self.data_dir.exists():
            _run_as(
                self.user,
                [self.pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"],
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as(
    user: pwd.struct_passwd | None, argv: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return subprocess.run(
        argv,
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd="/",
        **kwargs,
    )


def start_postgres() -> PostgresInstance:
    initdb = find_binary("initdb")
    pg_ctl = find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise ServiceUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
            "/usr/lib/postgresql/*/bin; install Debian's 'postgresql' or set "
            f"{POSTGRES_URL_ENV}"
        )
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="callcenter-test-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    instance = PostgresInstance(root=root, port=free_loopback_port(), pg_ctl=pg_ctl, user=user)
    try:
        _run_as(
            user,
            [
                initdb,
                "-D", str(instance.data_dir),
                "-U", PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        # Durability is worthless for a throwaway cluster; fsync off keeps CREATE DATABASE
        # per test cheap. The socket lives in our temp dir, not /var/run/postgresql.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {instance.port} "
            f"-c unix_socket_directories={root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        _run_as(
            user,
            [
                pg_ctl, "start", "-w", "-t", "60",
                "-D", str(instance.data_dir),
                "-l", str(instance.log_file),
                "-o", options,
            ],
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = _process_failure(exc)
        with contextlib.suppress(OSError):
            detail += "\n" + instance.log_file.read_text(errors="replace")[-2000:]
        instance.stop()
        raise ServiceUnavailable(f"could not start a throwaway PostgreSQL: {detail}") from exc
    return instance


def _process_failure(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        out = (exc.stderr or exc.stdout or "").strip()
        return f"{Path(str(exc.cmd[0])).name} exited {exc.returncode}: {out[-2000:]}"
    return str(exc)


# --------------------------------------------------------------------------- Redis


def check_redis(url: str, timeout: float = 5.0) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


@dataclass
class RedisInstance:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis(port: int | None = None, ready_timeout: float = 20.0) -> RedisInstance:
    """A throwaway redis-server; ``port`` lets a test restart one where it was."""
    binary = find_binary("redis-server")
    if binary is None:
        raise ServiceUnavailable(
            f"no redis-server on PATH; install Debian's 'redis-server' or set {REDIS_URL_ENV}"
        )
    root = Path(tempfile.mkdtemp(prefix="callcenter-test-redis-"))
    port = port or free_loopback_port()
    log = (root / "redis.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(root),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    instance = RedisInstance(root=root, port=port, process=process)
    deadline = time.monotonic() + ready_timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            check_redis(instance.url, timeout=1.0)
            return instance
        except Exception as exc:  # not listening yet
            last_error = exc
            time.sleep(0.05)
    output = ""
    with contextlib.suppress(OSError):
        output = (root / "redis.log").read_text(errors="replace")[-2000:]
    instance.stop()
    raise ServiceUnavailable(
        f"could not start a throwaway redis-server (exit {process.returncode}, "
        f"last error {last_error!r}): {output}"
    )


# --------------------------------------------------------------------------- the pool


@dataclass
class _Slot:
    url: str | None = None
    error: str | None = None
    source: str = ""
    stop: Callable[[], None] | None = None


class TestServices:
    """Lazily provides one PostgreSQL and one Redis for a whole test session."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, env: dict[str, str] | os._Environ[str] = os.environ) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._postgres: _Slot | None = None
        self._redis: _Slot | None = None
        self.skipped: dict[str, set[str]] = {"postgres": set(), "redis": set()}

    @property
    def required(self) -> bool:
        return services_required(self._env)

    def postgres_url(self) -> str:
        with self._lock:
            if self._postgres is None:
                self._postgres = self._provide_postgres()
            return _unwrap("PostgreSQL", self._postgres)

    def redis_url(self) -> str:
        with self._lock:
            if self._redis is None:
                self._redis = self._provide_redis()
            return _unwrap("Redis", self._redis)

    def describe(self) -> list[str]:
        lines = []
        for label, slot in (("PostgreSQL", self._postgres), ("Redis", self._redis)):
            if slot is None:
                continue
            if slot.url is not None:
                lines.append(f"{label}: {slot.source} {hide_password(slot.url)}")
            else:
                lines.append(f"{label}: unavailable: {slot.error}")
        return lines

    def close(self) -> None:
        for slot in (self._postgres, self._redis):
            if slot is not None and slot.stop is not None:
                slot.stop()
                slot.stop = None

    def _provide_postgres(self) -> _Slot:
        given = self._env.get(POSTGRES_URL_ENV)
        if given:
            try:
                run_coroutine_in_thread(lambda: check_postgres(given))
            except Exception as exc:
                return _Slot(
                    error=f"{POSTGRES_URL_ENV}={hide_password(given)} is unreachable: {exc!r}"
                )
            return _Slot(url=given, source=f"from {POSTGRES_URL_ENV}")
        try:
            instance = start_postgres()
            run_coroutine_in_thread(lambda: check_postgres(instance.url))
        except ServiceUnavailable as exc:
            return _Slot(error=str(exc))
        return _Slot(url=instance.url, source="throwaway", stop=instance.stop)

    def _provide_redis(self) -> _Slot:
        given = self._env.get(REDIS_URL_ENV)
        if given:
            try:
                check_redis(given)
            except Exception as exc:
                return _Slot(
                    error=f"{REDIS_URL_ENV}={hide_password(given)} is unreachable: {exc!r}"
                )
            return _Slot(url=given, source=f"from {REDIS_URL_ENV}")
        try:
            instance = start_redis()
        except ServiceUnavailable as exc:
            return _Slot(error=str(exc))
        return _Slot(url=instance.url, source="throwaway", stop=instance.stop)


def _unwrap(label: str, slot: _Slot) -> str:
    if slot.url is None:
        raise ServiceUnavailable(f"{label} unavailable: {slot.error}")
    return slot.url
