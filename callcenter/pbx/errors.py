"""Errors of the PBX layer (one root; AMI errors stay below it)."""

from __future__ import annotations


class PbxError(Exception):
    """Root of errors raised by ``callcenter.pbx``."""


class PbxOperationError(PbxError):
    """The PBX refused an operation; ``pbx_message`` is Asterisk's own text."""

    def __init__(self, action: str, pbx_message: str) -> None:
        self.action = action
        self.pbx_message = pbx_message
        super().__init__(f"{action} refused by the PBX: {pbx_message}")


class NotOwner(PbxError):
    """This instance does not (or no longer) own the PBX's AMI stream."""
