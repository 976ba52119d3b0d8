"""Tables of the callback part of follow-ups (filled in by its work item)."""

from __future__ import annotations
