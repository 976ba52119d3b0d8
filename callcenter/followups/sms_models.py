"""Tables of the sms part of follow-ups (filled in by its work item)."""

from __future__ import annotations
