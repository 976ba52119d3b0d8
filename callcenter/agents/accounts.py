"""Agent accounts: create, look up, list, disable, and check passwords.

Passwords are hashed with argon2id (argon2-cffi). When the hasher's parameters are raised,
a successful sign-in quietly re-hashes the password with the new ones, so the whole staff
moves to the stronger hash without a reset. A failed sign-in costs the same whether the
username exists, is disabled or the password is wrong: an unknown name is checked against
a dummy hash, so response times do not tell who works here.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.store import Store

from .errors import AccountExists, UnknownAccount, WeakPassword
from .models import (
    Account,
    AgentAccount,
    AgentSkill,
    Role,
    SkillQueues,
    normalise_display_name,
    normalise_endpoint,
    normalise_role,
    normalise_skills,
    normalise_username,
)

PASSWORD_MIN_LENGTH = 10
# argon2 hashes any length, but a megabyte "password" per request is a cheap way to burn CPU.
PASSWORD_MAX_LENGTH = 1024

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_password_policy(password: str, username: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise WeakPassword(f"must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword(f"must be at most {PASSWORD_MAX_LENGTH} characters")
    if password.strip().lower() == username.lower():
        raise WeakPassword("must not be the username")


class AccountService:
    """Accounts in the database; no HTTP, no AMI."""

    def __init__(
        self,
        store: Store,
        *,
        hasher: PasswordHasher | None = None,
        skill_queues: SkillQueues | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._skill_queues = skill_queues or SkillQueues()
        self._clock = clock
        self._dummy_hash: str | None = None

    @property
    def skill_queues(self) -> SkillQueues:
        return self._skill_queues

    # -- create and read -------------------------------------------------------

    async def add(
        self,
        username: str,
        *,
        display_name: str,
        role: Role | str,
        endpoint: str,
        password: str,
        skills: Iterable[str] = (),
    ) -> Account:
        name = normalise_username(username)
        row_role = normalise_role(role)
        chosen = normalise_skills(skills, self._skill_queues.skills)
        check_password_policy(password, name)
        now = self._clock()
        row = AgentAccount(
            username=name,
            display_name=normalise_display_name(display_name),
            role=row_role.value,
            endpoint=normalise_endpoint(endpoint),
            enabled=True,
            password_hash=self._hasher.hash(password),
            created_at=now,
            password_changed_at=now,
            disabled_at=None,
            skills=[AgentSkill(skill=s) for s in sorted(chosen)],
        )
        try:
            async with self._store.transaction() as session:
                session.add(row)
                await session.flush()
                return Account.from_row(row)
        except IntegrityError as exc:
            # The unique username is the only constraint a valid row can violate; a
            # concurrent add of the same name lands here rather than in a pre-check.
            raise AccountExists(name) from exc

    async def get(self, username: str) -> Account:
        async with self._store.session() as session:
            return Account.from_row(await self._row(session, username))

    async def find(self, username: str) -> Account | None:
        try:
            return await self.get(username)
        except UnknownAccount:
            return None

    async def list(
        self, *, include_disabled: bool = True, role: Role | str | None = None
    ) -> list[Account]:
        query = select(AgentAccount).order_by(AgentAccount.username)
        if not include_disabled:
            query = query.where(AgentAccount.enabled.is_(True))
        if role is not None:
            query = query.where(AgentAccount.role == normalise_role(role).value)
        async with self._store.session() as session:
            rows = (await session.scalars(query)).all()
            return [Account.from_row(row) for row in rows]

    async def by_endpoint(self, endpoint: str) -> builtins.list[Account]:
        """Enabled accounts that use this softphone (a desk phone serves several shifts)."""
        query = (
            select(AgentAccount)
            .where(AgentAccount.endpoint == normalise_endpoint(endpoint))
            .where(AgentAccount.enabled.is_(True))
            .order_by(AgentAccount.username)
        )
        async with self._store.session() as session:
            return [Account.from_row(row) for row in (await session.scalars(query)).all()]

    # -- change ----------------------------------------------------------------

    async def disable(self, username: str) -> Account:
        """Disable the account; disabling a disabled account keeps the first date."""
        async with self._store.transaction() as session:
            row = await self._row(session, username)
            if row.enabled:
                row.enabled = False
                row.disabled_at = self._clock()
            await session.flush()
            return Account.from_row(row)

    async def enable(self, username: str) -> Account:
        async with self._store.transaction() as session:
            row = await self._row(session, username)
            row.enabled = True
            row.disabled_at = None
            await session.flush()
            return Account.from_row(row)

    async def set_password(self, username: str, password: str) -> Account:
        async with self._store.transaction() as session:
            row = await self._row(session, username)
            check_password_policy(password, row.username)
            row.password_hash = self._hasher.hash(password)
            row.password_changed_at = self._clock()
            await session.flush()
            return Account.from_row(row)

    async def set_skills(self, username: str, skills: Iterable[str]) -> Account:
        chosen = normalise_skills(skills, self._skill_queues.skills)
        async with self._store.transaction() as session:
            row = await self._row(session, username)
            current = {s.skill: s for s in row.skills}
            # Keep the rows that stay: delete-orphan removes the others, no key is reused
            # within one flush (which PostgreSQL would reject as a duplicate).
            row.skills = [current.get(s) or AgentSkill(skill=s) for s in sorted(chosen)]
            await session.flush()
            return Account.from_row(row)

    async def set_endpoint(self, username: str, endpoint: str) -> Account:
        async with self._store.transaction() as session:
            row = await self._row(session, username)
            row.endpoint = normalise_endpoint(endpoint)
            await session.flush()
            return Account.from_row(row)

    # -- sign-in ---------------------------------------------------------------

    async def verify_password(self, username: str, password: str) -> Account | None:
        """The account if ``password`` is hers and she is enabled, else None.

        The answer does not say which of the three failed, and every path runs one argon2
        verification, so neither the answer nor its timing tells an unknown name apart.
        """
        try:
            name = normalise_username(username)
        except ValueError:
            name = None
        if len(password) > PASSWORD_MAX_LENGTH:
            password = password[:PASSWORD_MAX_LENGTH]  # still costs one verification
        async with self._store.transaction() as session:
            row = None
            if name is not None:
                row = await session.scalar(
                    select(AgentAccount).where(AgentAccount.username == name)
                )
            if row is None:
                self._verify(self._dummy(), password)
                return None
            if not self._verify(row.password_hash, password) or not row.enabled:
                return None
            if self._hasher.check_needs_rehash(row.password_hash):
                row.password_hash = self._hasher.hash(password)
            await session.flush()
            return Account.from_row(row)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        # Hashed with this service's parameters, so it costs what a real account costs.
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("not a password: unknown account")
        return self._dummy_hash

    @staticmethod
    async def _row(session: AsyncSession, username: str) -> AgentAccount:
        try:
            name = normalise_username(username)
        except ValueError:
            raise UnknownAccount(username) from None
        row = await session.scalar(select(AgentAccount).where(AgentAccount.username == name))
        if row is None:
            raise UnknownAccount(name)
        return row
