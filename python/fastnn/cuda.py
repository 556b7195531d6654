"""CUDA backend front: whether it exists here (placeholder until fastnn._cuda lands)."""
from __future__ import annotations


def is_compiled() -> bool:
    """True when the build produced fastnn._cuda."""
    return False


def is_available() -> bool:
    """True when fastnn._cuda imports and a CUDA device is present."""
    return False


def unavailable_reason() -> str:
    return "fastnn was built without CUDA"
