"""AMI wire protocol and asyncio client. Imports nothing else from ``callcenter``."""

from .agi import AGIResult, decode_agi_result, parse_agi_env, parse_agi_result
from .client import AMIClient, AMIClientStats, Backoff, EventSubscription
from .encoder import encode_action
from .errors import (
    AGIChannelGone,
    AGIError,
    AMIActionError,
    AMIAuthError,
    AMIConnectionError,
    AMIEncodeError,
    AMIError,
    AMIProtocolError,
    AMITimeoutError,
)
from .frame import Frame
from .parser import AMIParser, BadFrame

__all__ = [
    "AGIResult",
    "AMIClient",
    "AMIClientStats",
    "Backoff",
    "EventSubscription",
    "decode_agi_result",
    "parse_agi_env",
    "parse_agi_result",
    "AGIChannelGone",
    "AGIError",
    "AMIActionError",
    "AMIAuthError",
    "AMIConnectionError",
    "AMIEncodeError",
    "AMIError",
    "AMIParser",
    "AMIProtocolError",
    "AMITimeoutError",
    "BadFrame",
    "Frame",
    "encode_action",
]
