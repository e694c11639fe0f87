"""Recommenders: the PyTorch AutoEncoder (needs `pip install recfast[train]`), EASE, Popularity.

Importing this package never imports torch; constructing an AutoEncoder does.
"""

from __future__ import annotations

import os

from ._explain import Explanation
from ._persist import stored_model_type
from .autoencoder import AutoEncoder, AutoEncoderConfig
from .base import Recommender
from .ease import EASE
from .popularity import Popularity

__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "EASE",
    "Explanation",
    "Popularity",
    "Recommender",
    "load_model",
]

_TYPES: dict[str, type[Recommender]] = {
    "AutoEncoder": AutoEncoder,
    "EASE": EASE,
    "Popularity": Popularity,
}


def load_model(path: str | os.PathLike) -> Recommender:
    """Load any model written by a recfast model's save(), dispatching on the stored type."""
    kind = stored_model_type(path)
    if kind not in _TYPES:
        raise ValueError(f"{os.fspath(path)} holds an unknown model type {kind!r}")
    return _TYPES[kind].load(path)
