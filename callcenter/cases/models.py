"""Tables of the cases domain. Numbers exist here only sealed (AES-GCM, see vault)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base


class CallerIdentity(Base):
    """One number the helpline knows, as a token and a sealed number.

    ``token_digest`` (HMAC under ``token_kid``) links her calls and cases; the
    number itself is only in ``sealed``, which opens only through the vault.
    A withheld caller has a random digest and no sealed number.
    """

    __tablename__ = "caller_identity"
    __table_args__ = (UniqueConstraint("token_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(16))  # caller | harasser
    token_kid: Mapped[str] = mapped_column(String(32))
    token_digest: Mapped[str] = mapped_column(String(64))
    token_code: Mapped[str] = mapped_column(String(16), index=True)
    sealed: Mapped[str | None] = mapped_column(String(255), default=None)
    sealed_kid: Mapped[str | None] = mapped_column(String(32), default=None)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    times_seen: Mapped[int] = mapped_column(Integer, default=1)
