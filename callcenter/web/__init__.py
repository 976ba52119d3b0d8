"""The web layer: REST API with its OpenAPI document, console and wallboard WebSockets,
pages, sign-in, RBAC, health and Prometheus metrics.

Wiring (the composition root does this)::

    deps = WebDeps(accounts=..., agents=..., calls=StoreCallLookup(store), bus=bus,
                   stats=lambda: {node: stats.snapshot() ...}, pbx_links=..., store=store,
                   redis=redis_client_or_None, options=WebOptions(...),
                   registry=CollectorRegistry())
    app = make_app(deps)
    # as AMI events are handled:
    deps.metrics.ami_event_lag.labels(node).set(lag_seconds)
"""

from .app import make_app
from .deps import StoreCallLookup, WebDeps, WebOptions
from .errors import WebError
from .metrics import WebMetrics, update_metrics

__all__ = [
    "StoreCallLookup",
    "WebDeps",
    "WebError",
    "WebMetrics",
    "WebOptions",
    "make_app",
    "update_metrics",
]
