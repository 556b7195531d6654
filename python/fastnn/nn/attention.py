"""``MultiHeadAttention``: Keras's layer on the fused ``ops.attention``.

``mha(query, value, key=None, attention_mask=None, use_causal_mask=False)``, with query
``(batch, Nq, Dq)``, value ``(batch, Nk, Dv)``, key ``(batch, Nk, Dk)`` (default: value):
project each to ``num_heads`` heads (``key_dim`` for queries and keys, ``value_dim`` for values),
attend with the fused kernel (the Nq x Nk scores are never stored), join the heads and project
back to ``Dq``. Self-attention (``mha(x, x)``: value is query, key absent or query too) runs the
three projections as one GEMM on a fused ``(H*(2*key_dim + value_dim), D)`` weight, whose row
blocks are the query, key and value kernels.

Differences from Keras, said plainly: kernels have the ``(out, in)`` layout of ``Dense`` (Keras
uses ``EinsumDense`` kernels); the output size is always Dq; and ``dropout`` is applied to the
attention's output (each head's weighted values) rather than to the attention probabilities,
which the fused kernel never materializes.

``attention_mask``: boolean ``(batch, Nq, Nk)`` (or ``(Nq, Nk)``), True where a query may attend
to a key, or a float mask added to the scores. ``use_causal_mask``: query i sees keys
``j <= i`` (Keras's top-left alignment when Nq != Nk). A query with no key to attend to gets
zeros. In a functional model the mask may be a symbolic input; it gets no gradient.

``backward(dy)`` returns ``[dquery, dvalue, dkey, None]``: in self-attention the whole gradient
of the one input is ``dquery`` (the others None); with ``key`` absent, ``dvalue`` includes the
key path. ``forward(x)`` on one array is self-attention and its backward returns ``dx`` alone,
so the layer also works inside a ``Sequential``.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from .. import random as _random
from . import _symbolic, initializers
from .core import _as_array
from .dropout import _SeededLayer

__all__ = ["MultiHeadAttention"]

Shape = Tuple[Optional[int], ...]


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _split_heads(a: np.ndarray, heads: int, d: int) -> np.ndarray:
    """(B, N, H*d) -> (B, H, N, d), a view (the attention op reads it in place)."""
    b, n = a.shape[0], a.shape[1]
    return a.reshape(b, n, heads, d).transpose(0, 2, 1, 3)


def _joined(b: int, n: int, heads: int, d: int, dtype: Any) -> Tuple[np.ndarray, np.ndarray]:
    """A (B, N, H*d) buffer and its (B, H, N, d) view: the attention op writes the heads through
    the view, and the buffer is the heads joined, with no copy."""
    buf = np.empty((b, n, heads * d), dtype)
    return buf, _split_heads(buf, heads, d)


class _AttentionCtx:
    __slots__ = ("fused", "proj", "attn", "drop", "out", "key_is_value", "shape", "single")


class MultiHeadAttention(_SeededLayer):
    """Multi-head attention (see the module docstring).

    ``num_heads``, ``key_dim`` (head size of queries and keys), ``value_dim`` (head size of
    values; default key_dim), ``dropout`` (rate on the attention output in training; ``seed``
    gives the layer a private generator), ``use_bias``.

    Weights, in ``get_weights()`` order: query kernel ``(H*key_dim, Dq)`` and bias, key kernel
    ``(H*key_dim, Dk)`` and bias, value kernel ``(H*value_dim, Dv)`` and bias, output kernel
    ``(Dq, H*value_dim)`` and bias (no biases with ``use_bias=False``).
    """

    def __init__(self, num_heads: int, key_dim: int, value_dim: Optional[int] = None,
                 dropout: float = 0.0, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 seed: Optional[int] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.num_heads = _positive(num_heads, "num_heads")
        self.key_dim = _positive(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else _positive(value_dim,
                                                                           "value_dim")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.seed = seed
        self._rng = None if seed is None else _random.generator(seed)
        self._fused_kernel: Optional[np.ndarray] = None
        self._fused_bias: Optional[np.ndarray] = None
        self._ctx: Optional[_AttentionCtx] = None

    # -- shapes ---------------------------------------------------------------------------------

    @staticmethod
    def _as_shapes(input_shape: Any) -> List[Optional[Shape]]:
        """``[query, value, key, mask]`` shapes (None for an absent one); a single shape means
        self-attention."""
        if isinstance(input_shape, (list, tuple)) and any(
                isinstance(s, (list, tuple)) for s in input_shape) and all(
                s is None or isinstance(s, (list, tuple)) for s in input_shape):
            shapes = list(input_shape) + [None] * (4 - len(input_shape))
            if len(shapes) != 4:
                raise ValueError(f"MultiHeadAttention takes [query, value, key, mask] shapes, "
                                 f"got {input_shape!r}")
        else:
            shapes = [input_shape, input_shape, None, None]
        return [None if s is None else tuple(None if d is None else int(d) for d in s)
                for s in shapes]

    def compute_output_shape(self, input_shape):
        q, v, k, m = self._as_shapes(input_shape)
        if q is None or v is None:
            raise ValueError(f"{self.name}: query and value are required")
        k = v if k is None else k
        for what, s in (("query", q), ("value", v), ("key", k)):
            if len(s) != 3 or s[-1] is None:
                raise ValueError(f"{self.name}: {what} must have shape (batch, steps, features) "
                                 f"with known features, got {s}")
        if k[1] is not None and v[1] is not None and k[1] != v[1]:
            raise ValueError(f"{self.name}: key and value must have the same number of steps, "
                             f"got key {k} and value {v}")
        if m is not None:
            self._check_mask_shape(m[1:] if len(m) == 3 else m, q[1], v[1])
        return (q[0], q[1], q[2])

    def _check_mask_shape(self, tail: Sequence[Optional[int]], nq: Optional[int],
                          nk: Optional[int], b: Any = "batch") -> None:
        tail = tuple(tail)
        ok = len(tail) == 2 and all(t is None or w is None or t in (1, w)
                                    for t, w in zip(tail, (nq, nk)))
        if not ok:
            raise ValueError(f"{self.name}: attention_mask must have shape ({b}, {nq}, {nk}) "
                             f"(query steps, key steps) or ({nq}, {nk}), got a mask ending in "
                             f"{tail}")

    def build(self, input_shape: Any) -> None:
        shapes = self._as_shapes(input_shape)
        out = self.compute_output_shape(shapes)
        q, v, k, _ = shapes
        k = v if k is None else k
        dq, dk, dv = q[-1], k[-1], v[-1]
        hk, hv = self.num_heads * self.key_dim, self.num_heads * self.value_dim
        dt = self.dtype
        init_k, init_b = self.kernel_initializer, self.bias_initializer
        blocks = [(hk, dq), (hk, dk), (hv, dv)]
        if dq == dk == dv:
            # One buffer whose row blocks are the three kernels: self-attention projects with
            # one GEMM, and the optimizer still sees Keras's three kernels (views).
            self._fused_kernel = np.empty((2 * hk + hv, dq), dt)
            kernels, lo = [], 0
            for rows, cols in blocks:
                view = self._fused_kernel[lo:lo + rows]
                view[...] = init_k((rows, cols), dt)
                kernels.append(view)
                lo += rows
            if self.use_bias:
                self._fused_bias = np.empty(2 * hk + hv, dt)
                biases = [self._fused_bias[:hk], self._fused_bias[hk:2 * hk],
                          self._fused_bias[2 * hk:]]
                for b in biases:
                    b[...] = init_b(b.shape, dt)
            else:
                biases = [None] * 3
        else:
            self._fused_kernel = self._fused_bias = None
            kernels = [np.ascontiguousarray(init_k(s, dt)) for s in blocks]
            biases = ([np.ascontiguousarray(init_b((s[0],), dt)) for s in blocks]
                      if self.use_bias else [None] * 3)
        self.query_kernel, self.key_kernel, self.value_kernel = kernels
        self.query_bias, self.key_bias, self.value_bias = biases
        self.output_kernel = np.ascontiguousarray(init_k((dq, hv), dt))
        self.output_bias = (np.ascontiguousarray(init_b((dq,), dt)) if self.use_bias else None)
        self.params = []
        for w, b in zip(kernels + [self.output_kernel], biases + [self.output_bias]):
            self.params.append(w)
            if b is not None:
                self.params.append(b)
        self.grads = [np.zeros_like(p) for p in self.params]
        self.input_shape = shapes
        self.output_shape = out
        self.built = True

    def _accepts(self, input_shape):
        try:
            q, v, k, m = self._as_shapes(input_shape)
            self.compute_output_shape([q, v, k, m])
        except ValueError:
            return False
        k = v if k is None else k
        bq, bv, bk, _ = self.input_shape
        bk = bv if bk is None else bk
        return q[-1] == bq[-1] and v[-1] == bv[-1] and k[-1] == bk[-1]

    # -- calling --------------------------------------------------------------------------------

    def __call__(self, query: Any, value: Any = None, key: Any = None,
                 attention_mask: Any = None, use_causal_mask: bool = False,
                 training: bool = False) -> Any:
        if value is None:
            raise TypeError(f"{self.name}: value is required (pass the query again for "
                            f"self-attention: mha(x, x))")
        inputs = [query, value, key, attention_mask]
        if _symbolic.is_symbolic(inputs):
            kwargs = {"use_causal_mask": True} if use_causal_mask else {}
            return _symbolic.call_symbolic(self, inputs, kwargs)
        return self.forward(inputs, training, use_causal_mask=use_causal_mask)

    def _cast(self, x: Any, what: str) -> np.ndarray:
        x = _as_array(x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: {what} must have shape (batch, steps, features), "
                             f"got {x.shape}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        return x

    def _mask(self, mask: Any, b: int, nq: int, nk: int, causal: bool):
        """The op's ``(mask, causal)`` for a Keras-style mask and causal flag."""
        m = None
        if mask is not None:
            m = np.asarray(mask)
            if m.dtype.kind not in "bf":
                raise TypeError(f"{self.name}: attention_mask must be boolean (True = attend) "
                                f"or float (added to the scores), got dtype {m.dtype}")
            if m.ndim not in (2, 3) or (m.ndim == 3 and m.shape[0] not in (1, b)):
                raise ValueError(f"{self.name}: attention_mask must have shape ({b}, {nq}, "
                                 f"{nk}) or ({nq}, {nk}), got {m.shape}")
            self._check_mask_shape(m.shape[-2:], nq, nk, b)
            if m.ndim == 3:
                m = m[:, None]  # one mask for every head
        if not causal or nq == nk:
            return m, bool(causal)
        # Keras aligns the causal mask to the top-left corner; the op's own causal flag aligns
        # it to the bottom-right when Nq != Nk, so spell it out.
        tril = np.tri(nq, nk, dtype=bool)
        if m is None:
            return tril, False
        if m.dtype == np.bool_:
            return m & tril, False
        return m + np.where(tril, 0.0, -np.inf).astype(m.dtype), False

    def forward(self, x, training=False, use_causal_mask=False):
        single = not isinstance(x, (list, tuple))  # one array: self-attention, as a chain layer
        items = [x, x] if single else list(x)
        items += [None] * (4 - len(items))
        query, value, key, mask = items
        self_attn = value is query and (key is None or key is query)
        key_is_value = key is None or key is value
        if key is None:
            key = value
        if not self.built:
            shapes = [(None,) + tuple(np.shape(a)[1:]) for a in (query, value)]
            shapes += [None if key is value else (None,) + tuple(np.shape(key)[1:]),
                       None if mask is None else tuple(np.shape(mask))]
            self.build(shapes)
        q_in = self._cast(query, "query")
        v_in = q_in if value is query else self._cast(value, "value")
        k_in = v_in if key_is_value else (q_in if key is query else self._cast(key, "key"))
        for what, a, w in (("query", q_in, self.query_kernel), ("value", v_in,
                                                                 self.value_kernel),
                           ("key", k_in, self.key_kernel)):
            if a.shape[-1] != w.shape[1]:
                raise ValueError(f"{self.name}: {what} has {a.shape[-1]} features but the layer "
                                 f"was built for {w.shape[1]}, got shape {a.shape}")
        if len({a.shape[0] for a in (q_in, v_in, k_in)}) != 1 or k_in.shape[1] != v_in.shape[1]:
            raise ValueError(f"{self.name}: query, value and key must share the batch size, and "
                             f"key and value the number of steps; got query {q_in.shape}, "
                             f"value {v_in.shape}, key {k_in.shape}")
        b, nq, nk = q_in.shape[0], q_in.shape[1], k_in.shape[1]
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        hk = h * kd
        ctx = _AttentionCtx()
        ctx.fused = self_attn and self._fused_kernel is not None
        ctx.key_is_value = key_is_value
        if ctx.fused:
            y, pc = ops.linear_forward(q_in, self._fused_kernel, self._fused_bias)
            if kd == vd:  # the three heads read in place out of (B, N, 3, H, d)
                qkv = y.reshape(b, nq, 3, h, kd).transpose(2, 0, 3, 1, 4)
                qh, kh, vh = qkv[0], qkv[1], qkv[2]
            else:
                qh = _split_heads(y[..., :hk], h, kd)
                kh = _split_heads(y[..., hk:2 * hk], h, kd)
                vh = _split_heads(y[..., 2 * hk:], h, vd)
            ctx.proj = pc
        else:
            qp, cq = ops.linear_forward(q_in, self.query_kernel, self.query_bias)
            kp, ck = ops.linear_forward(k_in, self.key_kernel, self.key_bias)
            vp, cv = ops.linear_forward(v_in, self.value_kernel, self.value_bias)
            qh, kh, vh = _split_heads(qp, h, kd), _split_heads(kp, h, kd), _split_heads(vp, h, vd)
            ctx.proj = (cq, ck, cv)
        m, causal = self._mask(mask, b, nq, nk, bool(use_causal_mask))
        o, oh = _joined(b, nq, h, vd, qh.dtype)
        _, ctx.attn = ops.attention_forward(qh, kh, vh, causal=causal, mask=m, out=oh)
        ctx.drop = None
        if training and self.dropout > 0.0:
            o, ctx.drop = ops.dropout_forward(o, self.dropout, seed=_random.draw_seed(self._rng))
        out, ctx.out = ops.linear_forward(o, self.output_kernel, self.output_bias)
        ctx.shape, ctx.single = (b, nq, nk), single
        self._ctx = ctx
        return out

    def backward(self, dy, need_dx=True):
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        hk, hv = h * kd, h * vd
        b, nq, nk = ctx.shape
        do, dwo, dbo = ops.linear_backward(ctx.out, dy)
        if ctx.drop is not None:
            do = ops.dropout_backward(ctx.drop, do)[0]
        do_h = _split_heads(do, h, vd)
        grads: List[Any] = []
        if ctx.fused:
            # The gradients written in place into the fused projection's (B, N, [q | k | v])
            dproj = np.empty((b, nq, 2 * hk + hv), do.dtype)
            dst = (_split_heads(dproj[..., :hk], h, kd), _split_heads(dproj[..., hk:2 * hk], h, kd),
                   _split_heads(dproj[..., 2 * hk:], h, vd))
            ops.attention_backward(ctx.attn, do_h, out=dst)
            dx, dw, db = ops.linear_backward(ctx.proj, dproj, need_dx=need_dx)
            cuts = ((0, hk), (hk, 2 * hk), (2 * hk, 2 * hk + hv))
            for lo, hi in cuts:
                grads.append(dw[lo:hi])
                if db is not None:
                    grads.append(db[lo:hi])
            result = [dx, None, None, None]
        else:
            cq, ck, cv = ctx.proj
            dqb, dqh = _joined(b, nq, h, kd, do.dtype)
            dkb, dkh = _joined(b, nk, h, kd, do.dtype)
            dvb, dvh = _joined(b, nk, h, vd, do.dtype)
            ops.attention_backward(ctx.attn, do_h, out=(dqh, dkh, dvh))
            dquery, dwq, dbq = ops.linear_backward(cq, dqb, need_dx=need_dx)
            dkey, dwk, dbk = ops.linear_backward(ck, dkb, need_dx=need_dx)
            dvalue, dwv, dbv = ops.linear_backward(cv, dvb, need_dx=need_dx)
            for dw, db in ((dwq, dbq), (dwk, dbk), (dwv, dbv)):
                grads.append(dw)
                if db is not None:
                    grads.append(db)
            if need_dx and ctx.key_is_value:
                dvalue = dvalue + dkey
                dkey = None
            result = [dquery, dvalue, dkey, None]
        grads.append(dwo)
        if dbo is not None:
            grads.append(dbo)
        self.grads[:] = grads
        if not need_dx:
            return None
        return result[0] if ctx.single else result

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "seed": self.seed,
        })
        return cfg
