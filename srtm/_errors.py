"""The exception tree.

    SrtmError
    ├── PolicyError        a TrafficPolicy (or a pool map) that makes no sense
    └── StorageError       the shared counter store failed; carries the storage URI

Gateway code never lets a StorageError reach the User: the gate falls back to
local decisions and logs it. The client adds its own branch (``srtm.client``).
"""

from __future__ import annotations


class SrtmError(Exception):
    """Root of every error srtm raises."""


class PolicyError(SrtmError, ValueError):
    """A policy that cannot work: the message names the field and what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class StorageError(SrtmError):
    """The counter store could not be reached or answered nonsense."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"storage {uri!r}: {reason}")
