"""AMI wire protocol and asyncio client. Imports nothing else from ``callcenter``."""

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
from .encoder import encode_action

__all__ = [
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
