"""Prometheus metrics of the service, on a registry the composition root owns.

Gauges of live state are set from the same snapshots the wallboard shows, at scrape time
(``update_metrics``), so ``/metrics`` and the wallboard never disagree. The AMI event lag
is set by the PBX wiring as events arrive (``WebMetrics.ami_event_lag``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from callcenter.agents.views import AgentView

AGENT_STATES = ("logged_out", "available", "ringing", "on_call", "wrap_up", "paused")


class WebMetrics:
    """The metric objects; one set per registry (a test builds its own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queue_waiting = Gauge(
            "callcenter_queue_waiting_callers",
            "Callers waiting in the queue now.",
            ["node", "queue"],
            registry=registry,
        )
        self.queue_longest_wait = Gauge(
            "callcenter_queue_longest_wait_seconds",
            "Wait of the caller waiting longest in the queue now.",
            ["node", "queue"],
            registry=registry,
        )
        self.queue_service_level = Gauge(
            "callcenter_queue_service_level_ratio",
            "Today's service level (NaN until a call counts).",
            ["node", "queue"],
            registry=registry,
        )
        self.queue_abandon_rate = Gauge(
            "callcenter_queue_abandon_rate_ratio",
            "Today's share of ended waits in which the caller hung up.",
            ["node", "queue"],
            registry=registry,
        )
        self.queue_calls = Gauge(
            "callcenter_queue_calls_today",
            "Today's calls of the queue by outcome.",
            ["node", "queue", "outcome"],
            registry=registry,
        )
        self.agents = Gauge(
            "callcenter_agents",
            "Agents by state, as the console shows them.",
            ["state"],
            registry=registry,
        )
        self.ami_event_lag = Gauge(
            "callcenter_ami_event_lag_seconds",
            "Age of the latest AMI event when it was handled (PBX clock to ours).",
            ["node"],
            registry=registry,
        )
        self.ws_clients = Gauge(
            "callcenter_web_sockets",
            "Open WebSockets by kind.",
            ["kind"],
            registry=registry,
        )
        self.ws_dropped = Counter(
            "callcenter_web_socket_slow_closed",
            "WebSockets closed because they could not keep up.",
            ["kind"],
            registry=registry,
        )
        self.logins = Counter(
            "callcenter_web_logins",
            "Sign-in attempts by result.",
            ["result"],
            registry=registry,
        )


def _value(figure: Any, name: str) -> Any:
    return figure.get(name) if isinstance(figure, Mapping) else getattr(figure, name)


def update_metrics(
    metrics: WebMetrics,
    *,
    snapshots: Mapping[str, Any] | None = None,
    views: Iterable[AgentView] | None = None,
    ami_lag: Mapping[str, float] | None = None,
) -> None:
    """Set the gauges from queue snapshots (per node), agent views and AMI lags."""
    if snapshots is not None:
        for node, snapshot in snapshots.items():
            for figures in _value(snapshot, "queues"):
                queue = _value(figures, "queue") or ""
                labels = (node, queue)
                metrics.queue_waiting.labels(*labels).set(_value(figures, "waiting"))
                metrics.queue_longest_wait.labels(*labels).set(_value(figures, "longest_wait"))
                level = _value(figures, "service_level")
                rate = _value(figures, "abandon_rate")
                metrics.queue_service_level.labels(*labels).set(
                    float("nan") if level is None else level
                )
                metrics.queue_abandon_rate.labels(*labels).set(
                    float("nan") if rate is None else rate
                )
                for outcome in ("offered", "answered", "abandoned", "overflowed", "lost"):
                    metrics.queue_calls.labels(node, queue, outcome).set(
                        _value(figures, outcome)
                    )
    if views is not None:
        counts = dict.fromkeys(AGENT_STATES, 0)
        for view in views:
            counts[view.state] = counts.get(view.state, 0) + 1
        for state, count in counts.items():
            metrics.agents.labels(state).set(count)
    if ami_lag is not None:
        for node, lag in ami_lag.items():
            metrics.ami_event_lag.labels(node).set(lag)
