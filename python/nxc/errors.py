# SPDX-License-Identifier: Apache-2.0
"""Exceptions carrying nxc's status and message."""

from . import _lib


class NxcError(RuntimeError):
    """An nxc call or op failed. `status` is the nxc_status_t number,
    `status_name` its name in nxc.h (NXC_ERR_...), `message` nxc's text.

    A RuntimeError, so callers of the reference (which raises RuntimeError
    for an errored transfer) keep working."""

    def __init__(self, status, message="", what=None):
        self.status = int(status)
        self.status_name = _lib.status_name(status)
        self.message = message or _lib.lib.nxc_status_string(self.status).decode()
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{self.status_name} ({self.status}): {self.message}")

    @property
    def retryable(self):
        """The peer or the transfer failed: a retry with fresh metadata may succeed."""
        return -49 <= self.status <= -40


class NotSupportedError(NxcError, NotImplementedError):
    """What was asked is not supported by this build's transports
    (for example CUDA memory: no GPU transport exists yet)."""


class MetadataError(NxcError, ValueError):
    """The metadata text was damaged, forged, or from another library."""


class NxcTimeoutError(NxcError, TimeoutError):
    """The op's own deadline passed (NXC_ERR_TIMED_OUT)."""


def error_for(status, message="", what=None):
    s = int(status)
    if s in (-30, -31):
        cls = NotSupportedError
    elif -29 <= s <= -20:
        cls = MetadataError
    elif s == -43:
        cls = NxcTimeoutError
    else:
        cls = NxcError
    return cls(s, message, what)


def check(status, what=None):
    """Raise for a negative status returned by a call, with nxc_last_error()."""
    if status < 0:
        raise error_for(status, _lib.last_error(), what)
    return status
