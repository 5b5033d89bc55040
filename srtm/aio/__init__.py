"""Async twins of the storage-facing parts, for the ASGI path (``limits.aio`` storages)."""
