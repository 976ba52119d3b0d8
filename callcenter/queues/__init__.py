"""Live queue statistics for the wallboard and the abandoned-call list.

Definitions of every figure: :mod:`callcenter.queues.stats`. Wiring and the
rules for counting each call once: :mod:`callcenter.queues.service`.
"""

from .service import AgentStateHook, QueueStatsConfig, QueueStatsService
from .stats import (
    AbandonedCall,
    AgentCounts,
    AgentDay,
    AgentState,
    MinutePoint,
    QueueFigures,
    QueueStatsSnapshot,
)

__all__ = [
    "AbandonedCall",
    "AgentCounts",
    "AgentDay",
    "AgentState",
    "AgentStateHook",
    "MinutePoint",
    "QueueFigures",
    "QueueStatsConfig",
    "QueueStatsService",
    "QueueStatsSnapshot",
]
