"""Agent accounts: roles, skills, the skill -> queue mapping, and their tables.

Agents (mostly women police personnel) and counsellors (UNICEF-trained, for distress calls)
take calls; supervisors watch the wallboard; admins manage accounts. An account's skills
decide which ACD queues she joins when she logs in, through :class:`SkillQueues`, which the
service config can replace: queue names belong to the dialplan (dialplans/queues_1090.conf),
not to the accounts table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from callcenter.store import Base

from .errors import InvalidAccountData


class Role(StrEnum):
    AGENT = "agent"
    COUNSELLOR = "counsellor"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# The skills an account can hold unless the configured mapping names others. Languages are
# ISO 639-1 codes, as the IVR's `language` (config/ivr.toml) uses them.
DEFAULT_SKILL_QUEUES: Mapping[str, tuple[str, ...]] = {
    "hi": ("wpl-general-hi",),
    "en": ("wpl-general-en",),
    "counselling": ("wpl-counselling",),
    "emergency": ("wpl-emergency",),
}
FALLBACK_QUEUE = "wpl-fallback"

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# `PJSIP/<endpoint>` as a queue member interface. No `@host` or `/` dial-string forms: the
# interface is also how DeviceStateChange names her phone, and it goes into AMI headers.
ENDPOINT_RE = re.compile(r"^PJSIP/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DISPLAY_NAME_MAX = 128


@dataclass(frozen=True, slots=True)
class SkillQueues:
    """Which queues an agent with given skills is a member of.

    ``everyone`` are the queues every call-taker joins whatever her skills: the fallback
    queue, which the dialplan uses when the backend is down, must always find someone.
    ``fallback`` is never paused for wrap-up (see ``callcenter.agents.state``).
    """

    by_skill: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SKILL_QUEUES)
    )
    everyone: tuple[str, ...] = (FALLBACK_QUEUE,)
    fallback: str = FALLBACK_QUEUE

    @classmethod
    def from_mapping(cls, table: Mapping[str, object]) -> SkillQueues:
        """From a config table: ``{"hi": "wpl-general-hi", "counselling": [...],
        "everyone": ["wpl-fallback"], "fallback": "wpl-fallback"}``."""
        by_skill: dict[str, tuple[str, ...]] = {}
        everyone: tuple[str, ...] = (FALLBACK_QUEUE,)
        fallback = FALLBACK_QUEUE
        for key, value in table.items():
            if key == "fallback":
                if not isinstance(value, str) or not value:
                    raise ValueError("fallback: must be a queue name")
                fallback = value
                continue
            queues = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
            if not queues or not all(isinstance(q, str) and q for q in queues):
                raise ValueError(f"{key}: must be a queue name or a list of queue names")
            if key == "everyone":
                everyone = queues
            else:
                by_skill[normalise_skill(key)] = queues
        return cls(by_skill=by_skill, everyone=everyone, fallback=fallback)

    @property
    def skills(self) -> frozenset[str]:
        return frozenset(self.by_skill)

    def queues_for(self, skills: Iterable[str]) -> tuple[str, ...]:
        """Her queues, skill queues first in skill order, then ``everyone``; no repeats."""
        ordered: dict[str, None] = {}
        for skill in sorted(set(skills)):
            for queue in self.by_skill.get(skill, ()):
                ordered[queue] = None
        for queue in self.everyone:
            ordered[queue] = None
        return tuple(ordered)


# -- validation ------------------------------------------------------------------


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise InvalidAccountData(
            "username",
            f"{username!r} must be 2-32 characters: a letter, then letters, digits, '.', '_' "
            "or '-'",
        )
    return name


def normalise_display_name(display_name: str) -> str:
    name = " ".join(display_name.split())
    if not name:
        raise InvalidAccountData("display_name", "must not be empty")
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidAccountData("display_name", f"longer than {DISPLAY_NAME_MAX} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise InvalidAccountData("display_name", "contains control characters")
    return name


def normalise_role(role: str | Role) -> Role:
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise InvalidAccountData(
            "role", f"{role!r} is not one of {', '.join(r.value for r in Role)}"
        ) from None


def normalise_endpoint(endpoint: str) -> str:
    value = endpoint.strip()
    # Accept the technology in any case (pjsip/1001) but store it as Asterisk prints it.
    if value[:6].upper() == "PJSIP/":
        value = "PJSIP/" + value[6:]
    if not ENDPOINT_RE.fullmatch(value):
        raise InvalidAccountData(
            "endpoint", f"{endpoint!r} must look like PJSIP/agent1001 (letters, digits, . _ -)"
        )
    return value


def normalise_skill(skill: str) -> str:
    return skill.strip().lower()


def normalise_skills(skills: Iterable[str], known: Iterable[str]) -> frozenset[str]:
    allowed = frozenset(known)
    chosen = frozenset(normalise_skill(s) for s in skills)
    unknown = sorted(chosen - allowed)
    if unknown:
        raise InvalidAccountData(
            "skills", f"unknown {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )
    return chosen


# -- tables ----------------------------------------------------------------------


class AgentAccount(Base):
    """One person who signs in to the console: call-taker, supervisor or admin."""

    __tablename__ = "agent_account"
    __table_args__ = (
        CheckConstraint(
            "role IN ('agent', 'counsellor', 'supervisor', 'admin')", name="role"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str] = mapped_column(String(DISPLAY_NAME_MAX))
    role: Mapped[str] = mapped_column(String(16))
    # Not unique: a desk's softphone is shared by the shifts that sit at it. The index is
    # for ContactStatus / DeviceStateChange -> who is at that phone.
    endpoint: Mapped[str] = mapped_column(String(80), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true(), default=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    skills: Mapped[list[AgentSkill]] = relationship(
        back_populates="account",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="AgentSkill.skill",
    )


class AgentSkill(Base):
    """One skill of one account; a table rather than JSON so "who speaks English" is a join."""

    __tablename__ = "agent_skill"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("agent_account.id", ondelete="CASCADE"), primary_key=True
    )
    skill: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)

    account: Mapped[AgentAccount] = relationship(back_populates="skills")


def _aware(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Account:
    """What the rest of the system sees of an account: never the password hash."""

    id: int
    username: str
    display_name: str
    role: Role
    skills: frozenset[str]
    endpoint: str
    enabled: bool
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None

    @classmethod
    def from_row(cls, row: AgentAccount) -> Account:
        return cls(
            id=row.id,
            username=row.username,
            display_name=row.display_name,
            role=Role(row.role),
            skills=frozenset(s.skill for s in row.skills),
            endpoint=row.endpoint,
            enabled=row.enabled,
            created_at=_aware(row.created_at),
            password_changed_at=_aware(row.password_changed_at),
            disabled_at=_aware(row.disabled_at) if row.disabled_at is not None else None,
        )

    @property
    def takes_calls(self) -> bool:
        return self.role in (Role.AGENT, Role.COUNSELLOR)

    def queues(self, mapping: SkillQueues) -> tuple[str, ...]:
        return mapping.queues_for(self.skills)
