"""Command line entry point (filled in by later modules)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("callcenter: no command yet", file=sys.stderr)
    return 2
