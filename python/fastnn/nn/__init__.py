"""The training layer: layers, the ``Sequential`` model, losses, metrics, callbacks, saving.

Built only on :mod:`fastnn.ops`, so every backend (C++, CUDA, Numba) runs it. Optimizers live
in :mod:`fastnn.optim`, seeding in :mod:`fastnn.random`.
"""
from . import callbacks, initializers, losses, metrics, regularizers  # noqa: F401
from .activations import Activation  # noqa: F401
from .callbacks import (Callback, EarlyStopping, History, LambdaCallback,  # noqa: F401
                        ModelCheckpoint)
from .conv import Conv1D, Conv2D, Conv2DTranspose  # noqa: F401
from .core import Dense, Flatten, Layer, Reshape  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .functional import Input, InputLayer, Model  # noqa: F401
from .merge import Add, Concatenate, Multiply  # noqa: F401
from .layer_normalization import LayerNormalization  # noqa: F401
from .attention import MultiHeadAttention  # noqa: F401
from .transformer import TransformerEncoderLayer  # noqa: F401
from .embedding import (PatchEmbedding, PositionalEmbedding,  # noqa: F401
                        SinusoidalPositionalEncoding)
from .pooling1d import GlobalAveragePooling1D  # noqa: F401
from .maxout import Maxout  # noqa: F401
from .model import Sequential  # noqa: F401
from .normalization import BatchNormalization  # noqa: F401
from .recurrent import GRU, LSTM, SimpleRNN  # noqa: F401
from .wrappers import Bidirectional, TimeDistributed  # noqa: F401
from .rbm import DBN, RBM  # noqa: F401
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D,  # noqa: F401
                      MaxPool2D, MaxPooling2D)
from .saving import load_model  # noqa: F401
from .torch_interop import load_torch_state_dict, torch_state_dict  # noqa: F401
from . import activations  # noqa: F401

__all__ = ["Layer", "Dense", "Activation", "Maxout", "Dropout", "Flatten", "Reshape",
           "Conv1D", "Conv2D", "Conv2DTranspose", "MaxPooling2D", "MaxPool2D",
           "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "BatchNormalization",
           "Sequential", "load_model", "load_torch_state_dict", "torch_state_dict", "Callback",
           "History", "EarlyStopping", "ModelCheckpoint", "LambdaCallback", "activations",
           "callbacks", "initializers", "losses", "metrics", "regularizers"]
__all__ += ["Embedding", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]
__all__ += ["RBM", "DBN"]
__all__ += ["Input", "InputLayer", "Model", "Add", "Concatenate", "Multiply",
            "LayerNormalization", "MultiHeadAttention", "TransformerEncoderLayer",
            "PatchEmbedding", "PositionalEmbedding", "SinusoidalPositionalEncoding",
            "GlobalAveragePooling1D"]
