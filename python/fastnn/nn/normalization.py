"""``BatchNormalization``: Keras's layer on ``ops.batch_norm2d``.

Training (``fit``, ``train_on_batch``, ``forward(x, training=True)``) normalizes each channel
with the statistics of the batch and moves the running statistics towards them; inference
(``predict``, ``evaluate``, ``forward(x)``) normalizes with the running statistics. A layer with
``trainable=False`` always runs in inference mode (Keras's rule, for fine-tuning).

``momentum`` has Keras's meaning, ``running = momentum * running + (1 - momentum) * batch``
(the op takes PyTorch's ``1 - momentum``). As in PyTorch, the running variance moves towards the
unbiased batch variance (Keras uses the biased one: they differ by a factor ``n / (n - 1)``, n the
values per channel in a batch).

Any input rank works: the channel axis is moved to position 1 and the rest flattened into an
image for the op (a view when the layout allows, as for NCHW batches, Dense outputs and
channels_last convolution outputs).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import initializers, regularizers
from .core import Layer, _as_array

__all__ = ["BatchNormalization"]


class _GammaBetaLayer(Layer):
    """A normalization with an optional scale ``gamma`` and offset ``beta``, each with an
    initializer and a regularizer (BatchNormalization, LayerNormalization): building them, the
    regularization loss and the way their gradients are stored."""

    gamma: Optional[np.ndarray] = None
    beta: Optional[np.ndarray] = None
    gamma_initializer: Any = None
    beta_initializer: Any = None
    gamma_regularizer: Any = None
    beta_regularizer: Any = None

    def _build_gamma_beta(self, size: Tuple[int]) -> None:
        """params = [gamma (if scale), beta (if center)] of shape ``size``, and their grads."""
        self.params = []
        if self.scale:
            self.gamma = np.ascontiguousarray(self.gamma_initializer(size, self.dtype))
            self.params.append(self.gamma)
        if self.center:
            self.beta = np.ascontiguousarray(self.beta_initializer(size, self.dtype))
            self.params.append(self.beta)
        self.grads = [np.zeros_like(p) for p in self.params]

    @property
    def has_regularizer(self) -> bool:
        return self.gamma_regularizer is not None or self.beta_regularizer is not None

    def regularization_loss(self) -> float:
        total = 0.0
        if self.gamma_regularizer is not None and self.gamma is not None:
            total += self.gamma_regularizer(self.gamma)
        if self.beta_regularizer is not None and self.beta is not None:
            total += self.beta_regularizer(self.beta)
        return total

    def _store_grads(self, dgamma: Any, dbeta: Any) -> None:
        """The grads of the params that exist, in params order, regularizers' terms added."""
        i = 0
        if dgamma is not None:
            if self.gamma_regularizer is not None:
                self.gamma_regularizer.add_grad(dgamma, self.gamma)
            self.grads[i] = dgamma
            i += 1
        if dbeta is not None:
            if self.beta_regularizer is not None:
                self.beta_regularizer.add_grad(dbeta, self.beta)
            self.grads[i] = dbeta


class BatchNormalization(_GammaBetaLayer):
    """Per-channel ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    ``axis``: the channel axis. None (the default) takes the channel axis of fastnn's default
    layouts: 1 for 2-D ``(batch, features)`` and 4-D ``(batch, channels, height, width)`` inputs
    (Dense and channels_first Conv2D outputs), the last axis for 3-D ``(batch, steps,
    channels)`` inputs (channels_last Conv1D outputs); give ``axis=-1`` after channels_last
    Conv2D layers. ``center`` / ``scale``: learn ``beta`` / ``gamma`` (else 0 / 1).

    Weights, in ``get_weights()`` order: ``gamma`` (if scale), ``beta`` (if center), then the
    buffers ``moving_mean`` and ``moving_variance``, which the layer updates itself: saved with
    the model, counted as non-trainable in ``summary()``, never given to an optimizer.
    ``torch_weights()`` / ``set_torch_weights(bn.state_dict())`` exchange them with
    ``torch.nn.BatchNorm1d``/``BatchNorm2d`` as ``weight``, ``bias``, ``running_mean``,
    ``running_var`` (give the PyTorch module ``eps=1e-3``, or this layer ``epsilon=1e-5``, and
    ``momentum = 1 - this momentum``).
    """

    _TORCH_KEYS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                   ("running_var", "moving_variance"))

    def __init__(self, axis: Optional[int] = None, momentum: float = 0.99,
                 epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer: Any = "zeros", gamma_initializer: Any = "ones",
                 moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = "float32", *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if axis is not None and (isinstance(axis, (bool, np.bool_))
                                 or not isinstance(axis, (int, np.integer))):
            raise ValueError(f"axis must be an int or None, got {axis!r}")
        self.axis = None if axis is None else int(axis)
        try:
            momentum, epsilon = float(momentum), float(epsilon)
        except (TypeError, ValueError):
            raise ValueError(f"momentum and epsilon must be numbers, got {momentum!r} and "
                             f"{epsilon!r}") from None
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if not epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.momentum, self.epsilon = momentum, epsilon
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.gamma: Optional[np.ndarray] = None
        self.beta: Optional[np.ndarray] = None
        self.moving_mean: Optional[np.ndarray] = None
        self.moving_variance: Optional[np.ndarray] = None
        self._axis: Optional[int] = None  # the resolved, non-negative channel axis
        self._ctx = None
        self._shape = None

    def _resolve_axis(self, rank: int) -> int:
        axis = self.axis
        if axis is None:
            axis = rank - 1 if rank == 3 else 1
        if not -rank <= axis < rank:
            raise ValueError(f"{self.name}: axis {self.axis} is out of range for inputs of "
                             f"rank {rank}")
        axis %= rank
        if axis == 0:
            raise ValueError(f"{self.name}: axis 0 is the batch axis; BatchNormalization "
                             f"normalizes over it, per channel of another axis")
        return axis

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: BatchNormalization needs inputs (batch, ...), got "
                             f"{tuple(input_shape)}")
        axis = self._resolve_axis(len(input_shape))
        if input_shape[axis] is None:
            raise ValueError(f"{self.name}: the channel axis {axis} of {tuple(input_shape)} "
                             f"must have a known size")
        return tuple(input_shape)

    def _build(self, input_shape):
        self._axis = self._resolve_axis(len(input_shape))
        c, dt = (int(input_shape[self._axis]),), self.dtype
        self._build_gamma_beta(c)
        self.moving_mean = np.ascontiguousarray(self.moving_mean_initializer(c, dt))
        self.moving_variance = np.ascontiguousarray(self.moving_variance_initializer(c, dt))
        self.buffers = [self.moving_mean, self.moving_variance]

    def _to_images(self, x: np.ndarray) -> np.ndarray:
        """(N, C, M, 1): channels at axis 1, every other non-batch axis flattened into M."""
        moved = np.moveaxis(x, self._axis, 1)
        return moved.reshape(moved.shape[0], moved.shape[1], -1, 1)

    def _from_images(self, y: np.ndarray) -> np.ndarray:
        return np.moveaxis(y.reshape(self._shape), 1, self._axis)

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != len(self.input_shape) or x.shape[self._axis] != self.input_shape[self._axis]:
            raise ValueError(f"{self.name}: expected inputs of shape {self.input_shape}, got "
                             f"{x.shape}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        xi = self._to_images(x)
        self._shape = np.moveaxis(x, self._axis, 1).shape
        y, self._ctx = ops.batch_norm2d_forward(
            xi, self.gamma, self.beta, self.moving_mean, self.moving_variance,
            training=bool(training) and self.trainable, momentum=1.0 - self.momentum,
            eps=self.epsilon)
        return self._from_images(y)

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        dx, dgamma, dbeta = ops.batch_norm2d_backward(self._ctx, self._to_images(_as_array(dy)))
        self._store_grads(dgamma, dbeta)
        return self._from_images(dx) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer":
                initializers.serialize(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
        })
        return cfg
