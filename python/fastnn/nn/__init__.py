"""The training layer: layers, the ``Sequential`` model, losses, metrics, callbacks, saving.

Built only on :mod:`fastnn.ops`, so every backend (C++, CUDA, Numba) runs it. Optimizers live
in :mod:`fastnn.optim`, seeding in :mod:`fastnn.random`.
"""
from . import callbacks, initializers, losses, metrics, regularizers  # noqa: F401
from .activations import Activation  # noqa: F401
from .callbacks import (Callback, EarlyStopping, History, LambdaCallback,  # noqa: F401
                        ModelCheckpoint)
from .core import Dense, Flatten, Layer, Reshape  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .maxout import Maxout  # noqa: F401
from .model import Sequential  # noqa: F401
from .saving import load_model  # noqa: F401
from . import activations  # noqa: F401

__all__ = ["Layer", "Dense", "Activation", "Maxout", "Dropout", "Flatten", "Reshape",
           "Sequential", "load_model", "Callback", "History", "EarlyStopping",
           "ModelCheckpoint", "LambdaCallback", "activations", "callbacks", "initializers",
           "losses", "metrics", "regularizers"]
