"""One exception root for the AMI layer, layered by cause (aiohttp style).

Callers catch ``AMIError`` for "anything the PBX link did"; the subclasses also
inherit the builtin that fits so generic code (``except ConnectionError``,
``except TimeoutError``) does the right thing without knowing about AMI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .frame import Frame


class AMIError(Exception):
    """Root of every error raised by ``callcenter.ami``."""


class AMIProtocolError(AMIError):
    """The byte stream broke the AMI framing rules (e.g. an oversized frame).

    Raised by the parser only when framing is lost; the connection must be
    dropped and re-established because the next byte can no longer be trusted.
    """


class AMIEncodeError(AMIError, ValueError):
    """An action could not be encoded (e.g. a header value containing CR or LF)."""


class AMIConnectionError(AMIError, ConnectionError):
    """The connection to the PBX is down, was lost, or could not be made."""


class AMIAuthError(AMIConnectionError):
    """The PBX rejected our credentials. Not retried: a wrong secret stays wrong."""


class AMITimeoutError(AMIError, TimeoutError):
    """An action got no reply within its timeout."""


class AMIActionError(AMIError):
    """The PBX answered an action with ``Response: Error``."""

    def __init__(self, action: str, response: Frame) -> None:
        self.action = action
        self.response = response
        message = response.get("Message") or "error"
        super().__init__(f"{action}: {message}")

    @property
    def message(self) -> str:
        return self.response.get("Message") or ""


class AGIError(AMIError):
    """Base of AsyncAGI command failures."""


class AGIChannelGone(AGIError):
    """The channel left AsyncAGI (AsyncAGIEnd or hangup): the command will never run.

    Asterisk still answers ``Added AGI command to queue`` for such a channel and
    then never sends a result, so the client fails these commands itself.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        # The channel name stays out of the message: a Local/<number>@ctx name
        # would put a number into whatever logs the exception.
        super().__init__("the channel is no longer in AsyncAGI")
