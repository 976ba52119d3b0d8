"""AMI parser throughput: ours vs panoramisk 1.4 vs a naive bytes.split parser.

    .venv/bin/python benchmarks/bench_parser.py [--events 200000] [--rounds 3]

Our parser runs twice when its compiled fast path is built (callcenter/ami/_speedups.pyx):
as it runs by default, and as the pure Python fallback that runs where it is not.
All parse the same synthetic stream (benchmarks/synthetic.py: Asterisk 22
header sets, about a quarter of the callers with Devanagari names) fed in 64 KiB
reads, as a socket would deliver it. Each must fully parse every frame into its
headers and count the events it found; a count that differs from the stream's
is reported, because a fast wrong parser is worth nothing. Rounds are
interleaved (ours, panoramisk, naive, ours, ...) so a noisy neighbour on the
machine hits all three alike; the median round is reported, with the best
round beside it. Every contender first parses a short warm-up stretch
untimed (imports, allocator arenas), and the collector is emptied before
every timed run and left on during it, as in production, for all alike.
The ratio of each round's pair (ours and panoramisk run back to back) is
printed too: on a loaded machine it is steadier than a ratio of medians.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.synthetic import chunks, synthetic_stream  # noqa: E402
from callcenter.ami.parser import AMIParser  # noqa: E402

CHUNK = 64 * 1024


def run_ours(reads: list[bytes], compiled: bool | None = None) -> int:
    parser = AMIParser(compiled=compiled)
    events = 0
    feed = parser.feed
    for data in reads:
        for frame in feed(data):
            if frame.kind == "event":
                events += 1
    return events


class _DummyTransport:
    def write(self, data: bytes) -> None:  # pragma: no cover - never called here
        pass

    def close(self) -> None:  # pragma: no cover
        pass


class _CountingManager:
    """What panoramisk's Manager gives its protocol at runtime, minus the I/O."""

    save_stream = None

    def __init__(self) -> None:
        self.events = 0

    def dispatch(self, message: Any) -> None:
        self.events += 1


def run_panoramisk(reads: list[bytes], encoding: str | None = "utf8") -> int:
    from panoramisk.ami_protocol import AMIProtocol

    protocol = AMIProtocol()
    protocol.connection_made(_DummyTransport())  # type: ignore[arg-type]
    manager = _CountingManager()
    # Manager.connection_made sets these; Manager's default encoding is utf8.
    # Without it the protocol falls back to ascii and silently drops every
    # non-ASCII byte (Devanagari names vanish): faster, but wrong.
    protocol.factory = manager
    if encoding is not None:
        protocol.encoding = encoding
    data_received = protocol.data_received
    for data in reads:
        data_received(data)
    return manager.events


def run_naive(reads: list[bytes]) -> int:
    """The obvious parser: split on blank lines, then lines, then ': '."""
    events = 0
    pending = b""
    for data in reads:
        frames = (pending + data).split(b"\r\n\r\n")
        pending = frames.pop()
        for raw in frames:
            lines = raw.decode("utf-8", "replace").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines if ": " in line)
            if "Event" in headers:
                events += 1
    return events


def measure(run: Callable[[list[bytes]], int], reads: list[bytes]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    events = run(reads)
    return time.perf_counter() - start, events


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--events", type=int, default=200_000)
    options.add_argument("--rounds", type=int, default=3)
    options.add_argument("--chunk", type=int, default=CHUNK)
    args = options.parse_args(argv)

    console = Console()
    data = synthetic_stream(args.events)
    reads = chunks(data, args.chunk)
    console.print(
        f"{args.events:,} events, {len(data) / 1e6:.1f} MB, "
        f"{len(reads):,} reads of {args.chunk:,} bytes, {args.rounds} rounds"
    )
    warm_up = reads[: max(1, len(reads) // 20)]
    ours_name = "callcenter AMIParser" + (
        " (compiled fast path)" if AMIParser().compiled else " (pure Python: _speedups not built)"
    )
    contenders: dict[str, Callable[[list[bytes]], int]] = {
        ours_name: run_ours,
        "panoramisk 1.4 AMIProtocol": run_panoramisk,
        "panoramisk, ascii fallback": lambda reads: run_panoramisk(reads, None),
        "naive bytes.split": run_naive,
    }
    if AMIParser().compiled:
        # The fallback that runs where the extension is not built, measured alike.
        contenders["callcenter AMIParser, pure Python"] = lambda reads: run_ours(reads, False)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    counts: dict[str, int] = {}
    for run in contenders.values():
        run(warm_up)
    for _ in range(args.rounds):
        for name, run in contenders.items():
            elapsed, events = measure(run, reads)
            times[name].append(elapsed)
            counts[name] = events

    table = Table(title="AMI parsing, median of rounds")
    table.add_column("parser")
    table.add_column("events/s", justify="right")
    table.add_column("best ev/s", justify="right")
    table.add_column("MB/s", justify="right")
    table.add_column("rounds (s)", justify="right")
    table.add_column("events seen", justify="right")
    rate: dict[str, float] = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        rate[name] = args.events / median
        seen = counts[name]
        table.add_row(
            name,
            f"{rate[name]:,.0f}",
            f"{args.events / min(runs):,.0f}",
            f"{len(data) / median / 1e6:,.1f}",
            " ".join(f"{t:.3f}" for t in runs),
            f"{seen:,}" if seen == args.events else f"[red]{seen:,} (wrong)[/red]",
        )
    console.print(table)
    ours = rate[ours_name]
    theirs = rate["panoramisk 1.4 AMIProtocol"]
    console.print(f"ours / panoramisk = {ours / theirs:.2f}x (medians)")
    paired = [
        p / o
        for o, p in zip(
            times[ours_name], times["panoramisk 1.4 AMIProtocol"], strict=True
        )
    ]
    console.print(
        "per-round ours / panoramisk: "
        + " ".join(f"{r:.2f}" for r in paired)
        + f" (median {statistics.median(paired):.2f}x)"
    )
    ours_right = all(counts[name] == args.events for name in contenders if "callcenter" in name)
    return 0 if ours_right else 1


if __name__ == "__main__":
    raise SystemExit(main())
