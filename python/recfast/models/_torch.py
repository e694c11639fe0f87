"""PyTorch, imported only when a model trains or loads a network."""

from __future__ import annotations

from typing import Any

TRAIN_HINT = "pip install recfast[train]"


def require_torch() -> Any:
    """Import torch or raise ImportError telling how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"this model is trained with PyTorch, which is not installed: {TRAIN_HINT}"
        ) from exc
    return torch
