"""Async twins of the storage-facing parts, for the ASGI path (``limits.aio`` storages)."""

from srtm.aio.gate import AsyncGate

__all__ = ["AsyncGate"]
