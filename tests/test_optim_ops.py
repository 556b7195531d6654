"""Fused optimizer updates, the gradient norm and the L1/L2 penalties against the float64
reference on every backend (several steps, so the state carries over), and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import ops
from fastnn import reference as ref
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (17, 33), (3, 4, 5), (70001,)]


def _state(rng, shape, dtype):
    p = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    return p, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                  (0.9, True, 0.0), (0.5, False, 1e-2),
                                                  (0.0, False, 1e-2)])
def test_sgd_step_matches_reference(backend, rng, dtype, shape, momentum, nesterov, wd):
    p, grads = _state(rng, shape, dtype)
    v = np.zeros_like(p)
    rp, rv = p.astype(np.float64), np.zeros(shape)
    for g in grads:
        ops.sgd_step(p, g, v, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
        rp, nv = ref.sgd_step(rp, g, rv, lr=0.1, momentum=momentum, nesterov=nesterov,
                              weight_decay=wd)
        rv = nv if nv is not None else rv
    check_op(p, rp, dtype, scale=3.0)
    if momentum:
        check_op(v, rv, dtype, scale=3.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_step_matches_reference(backend, rng, dtype, shape, wd, decoupled):
    p, grads = _state(rng, shape, dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    rp, rm, rv = p.astype(np.float64), np.zeros(shape), np.zeros(shape)
    for t, g in enumerate(grads, start=1):
        ops.adam_step(p, g, m, v, lr=1e-2, step=t, weight_decay=wd, decoupled=decoupled)
        rp, rm, rv = ref.adam_step(rp, g, rm, rv, lr=1e-2, step=t, weight_decay=wd,
                                   decoupled=decoupled)
    check_op(p, rp, dtype, scale=3.0)
    check_op(m, rm, dtype)
    check_op(v, rv, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("averages", [False, True])
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, True)])
def test_adam_steps_equal_the_steps_one_by_one(backend, rng, dtype, averages, wd, decoupled):
    """The multi-tensor form gives the bits of adam_step (and ema_update) called per tensor,
    on tensors of mixed sizes, an empty one included."""
    shapes = [(7,), (3, 5), (0,), (64, 33), (1,)]

    def state():
        return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]

    ps, gs, ms, vs, avs = state()
    ms = [np.abs(m) * 0.1 for m in ms]
    vs = [np.abs(v) * 0.1 for v in vs]
    one = [[a.copy() for a in x] for x in (ps, ms, vs, avs)]
    before = ps[3].copy()
    kw = dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, step=3, weight_decay=wd,
              decoupled=decoupled)
    ops.adam_steps(ps, gs, ms, vs, averages=avs if averages else None, ema_momentum=0.9, **kw)
    for p, g, m, v, a in zip(one[0], gs, one[1], one[2], one[3]):
        ops.adam_step(p, g, m, v, **kw)
        if averages:
            ops.ema_update(a, p, momentum=0.9)
    for got, want in zip((ps, ms, vs, avs), one):
        for x, y in zip(got, want):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(ps[3], before)  # the step did move the parameters


def test_adam_steps_bad_input(rng):
    p = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    g = [np.ones(3, np.float32), np.ones(2, np.float32)]
    z = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    with pytest.raises(ValueError, match="one length"):
        ops.adam_steps(p, g[:1], z, z, lr=0.1, step=1)
    with pytest.raises(ValueError, match="tensor 1"):
        ops.adam_steps(p, [g[0], np.ones(3, np.float32)], z, [a.copy() for a in z], lr=0.1,
                       step=1)
    with pytest.raises(ValueError, match="step"):
        ops.adam_steps(p, g, z, [a.copy() for a in z], lr=0.1, step=0)
    with pytest.raises(ValueError, match="one length"):
        ops.adam_steps(p, g, z, [a.copy() for a in z], lr=0.1, step=1, averages=p[:1])
    # mixed dtypes run tensor by tensor, with the same result
    p2 = [np.zeros(3, np.float32), np.zeros(2, np.float64)]
    g2 = [np.ones(3, np.float32), np.ones(2, np.float64)]
    m2 = [np.zeros_like(a) for a in p2]
    v2 = [np.zeros_like(a) for a in p2]
    ops.adam_steps(p2, g2, m2, v2, lr=0.1, step=1)
    assert np.allclose(p2[0], -0.1, rtol=1e-4) and np.allclose(p2[1], -0.1, rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_step_matches_reference(backend, rng, dtype, shape, momentum):
    p, grads = _state(rng, shape, dtype)
    sq = np.zeros_like(p)
    vel = np.zeros_like(p) if momentum else None
    rp, rsq, rvel = p.astype(np.float64), np.zeros(shape), np.zeros(shape)
    for g in grads:
        ops.rmsprop_step(p, g, sq, lr=1e-2, momentum=momentum, velocity=vel)
        rp, rsq, nvel = ref.rmsprop_step(rp, g, rsq, lr=1e-2, momentum=momentum, velocity=rvel)
        rvel = nvel if nvel is not None else rvel
    check_op(p, rp, dtype, scale=3.0)
    check_op(sq, rsq, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.99])
def test_ema_update_matches_reference(backend, rng, dtype, shape, momentum):
    avg, params = _state(rng, shape, dtype)
    ravg = avg.astype(np.float64)
    for p in params:
        ops.ema_update(avg, p, momentum=momentum)
        ravg = ref.ema_update(ravg, p, momentum=momentum)
    check_op(avg, ravg, dtype, scale=3.0)


def test_ema_update_bad_input(backend):
    avg = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"param must have the parameter's shape \(3, 4\)"):
        ops.ema_update(avg, np.ones((4, 3), np.float32), momentum=0.9)
    with pytest.raises(TypeError, match="param has dtype float64"):
        ops.ema_update(avg, np.ones((3, 4)), momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        ops.ema_update(avg, np.ones((3, 4), np.float32), momentum=1.5)


def test_adam_first_step_is_bias_corrected(backend):
    # Keras's eps sits outside the bias correction: step 1 moves by lr*g / (|g| + eps/sqrt(1-b2)),
    # i.e. by about lr against the gradient's sign whatever its scale.
    p = np.zeros(4, np.float32)
    g = np.array([3.0, -0.5, 1e-3, 0.0], np.float32)
    ops.adam_step(p, g, np.zeros(4, np.float32), np.zeros(4, np.float32), lr=0.01, step=1)
    g64 = g.astype(np.float64)
    np.testing.assert_allclose(p, -0.01 * g64 / (np.abs(g64) + 1e-7 / math.sqrt(1e-3)),
                               rtol=1e-5)
    assert p[0] == pytest.approx(-0.01, rel=1e-5) and p[3] == 0.0


def test_sgd_matches_torch(rng):
    torch = pytest.importorskip("torch")
    for momentum, nesterov, wd in [(0.9, True, 1e-2), (0.8, False, 0.0)]:
        p0 = rng.standard_normal((5, 6))
        grads = [rng.standard_normal((5, 6)) for _ in range(3)]
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt = torch.optim.SGD([tp], lr=0.05, momentum=momentum, nesterov=nesterov,
                              weight_decay=wd)
        p, v = p0.copy(), np.zeros_like(p0)
        for g in grads:
            tp.grad = torch.tensor(g)
            opt.step()
            ops.sgd_step(p, g, v, lr=0.05, momentum=momentum, nesterov=nesterov,
                         weight_decay=wd)
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_size_updates(backend, dtype):
    z = np.zeros((0, 3), dtype)
    ops.sgd_step(z, z.copy(), z.copy(), lr=0.1, momentum=0.9)
    ops.adam_step(z, z.copy(), z.copy(), z.copy(), lr=0.1, step=1)
    ops.rmsprop_step(z, z.copy(), z.copy(), lr=0.1)
    assert ops.grad_norm([z]) == 0.0
    assert ops.regularizer_loss(z, l1=1.0, l2=1.0) == 0.0


# ---- grad_norm, clipping, regularizers -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm(backend, rng, dtype):
    grads = [rng.standard_normal(s).astype(dtype) for s in [(1,), (7, 17), (33,), (20000,)]]
    got = ops.grad_norm(grads)
    assert isinstance(got, float)
    check_op(np.array(got, dtype), np.array(ref.grad_norm(grads)), dtype, reduction=20000)
    assert ops.grad_norm(grads[1]) == pytest.approx(ref.grad_norm([grads[1]]), rel=1e-6)
    assert ops.grad_norm([]) == 0.0
    assert ops.grad_norm([grads[1][:, ::2]]) == pytest.approx(ref.grad_norm([grads[1][:, ::2]]),
                                                              rel=1e-6)


def test_clip_grad_norm(backend, rng):
    grads = [rng.standard_normal((4, 5)), rng.standard_normal(3)]
    before = [g.copy() for g in grads]
    norm = ops.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(ref.grad_norm(before))
    assert ops.grad_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads[0], before[0] / norm)
    assert ops.clip_grad_norm(grads, 10.0) == pytest.approx(1.0)  # under the limit: untouched
    assert ops.grad_norm(grads) == pytest.approx(1.0)
    nan = [np.array([np.nan, 1.0])]
    assert math.isnan(ops.clip_grad_norm(nan, 1.0)) and nan[0][1] == 1.0
    with pytest.raises(ValueError, match="max_norm"):
        ops.clip_grad_norm(grads, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 17), (33, 3), (70001,)])
@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.01), (0.01, 0.02)])
def test_regularizers_match_reference(backend, rng, dtype, shape, l1, l2):
    w = rng.standard_normal(shape).astype(dtype)
    w.flat[0] = 0.0  # sign(0) = 0
    got = ops.regularizer_loss(w, l1=l1, l2=l2)
    check_op(np.array(got, dtype), np.array(ref.regularizer_loss(w, l1, l2)), dtype,
             reduction=w.size)
    g = rng.standard_normal(shape).astype(dtype)
    want = g.astype(np.float64) + ref.regularizer_grad(w, l1, l2)
    ops.regularizer_grad(g, w, l1=l1, l2=l2)
    check_op(g, want, dtype)


def test_regularizer_grad_finite_differences(backend, rng):
    w = rng.standard_normal((4, 6))
    w = np.where(np.abs(w) < 0.05, 0.3, w)  # |w| is smooth away from 0
    g = np.zeros_like(w)
    ops.regularizer_grad(g, w, l1=0.03, l2=0.05)
    num = numeric_grad(lambda: ops.regularizer_loss(w, l1=0.03, l2=0.05), w)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


# ---- bad input -----------------------------------------------------------------------------------

def test_optimizer_bad_input(backend):
    p = np.zeros((3, 4), np.float32)
    g = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"grad must have the parameter's shape \(3, 4\)"):
        ops.sgd_step(p, np.ones((4, 3), np.float32), lr=0.1)
    with pytest.raises(TypeError, match="grad has dtype float64"):
        ops.sgd_step(p, np.ones((3, 4)), lr=0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.sgd_step(np.zeros((4, 3), np.float32).T, g, lr=0.1)
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        ops.sgd_step(ro, g, lr=0.1)
    with pytest.raises(TypeError, match="NumPy array"):
        ops.sgd_step(p.tolist(), g, lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.sgd_step(np.zeros((3, 4), np.int32), g, lr=0.1)
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_step(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov"):
        ops.sgd_step(p, g, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        ops.sgd_step(p, g, lr=-1.0)
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_step(p, g, lr=None)
    m, v = np.zeros_like(p), np.zeros_like(p)
    with pytest.raises(ValueError, match="step"):
        ops.adam_step(p, g, m, v, lr=0.1, step=0)
    with pytest.raises(TypeError, match="step"):
        ops.adam_step(p, g, m, v, lr=0.1, step=1.0)
    with pytest.raises(ValueError, match="beta2"):
        ops.adam_step(p, g, m, v, lr=0.1, step=1, beta2=1.0)
    with pytest.raises(ValueError, match="v must have"):
        ops.adam_step(p, g, m, np.zeros(12, np.float32), lr=0.1, step=1)
    with pytest.raises(ValueError, match="velocity"):
        ops.rmsprop_step(p, g, np.zeros_like(p), lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="l1"):
        ops.regularizer_loss(p, l1=-1.0)
    assert not p.any()  # nothing was updated by a rejected call


# ---- every ISA build of the streaming loops ------------------------------------------------------

def _isas():
    import fastnn
    if fastnn.backend._C is None:
        return []
    return [i for i in ("generic", "avx2", "avx512") if fastnn.backend._C.cpu_supports(i)]


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_loops_on_every_isa(rng, isa, dtype):
    import fastnn
    shape = (1000, 37)  # not a multiple of any vector width
    p, grads = _state(rng, shape, dtype)
    prev = fastnn.get_isa()
    fastnn.set_isa(isa)
    try:
        with fastnn.backend.use_backend("cpp"):
            outs = {}
            for name in ("sgd", "nesterov", "adamw", "rmsprop"):
                q, s1, s2 = p.copy(), np.zeros_like(p), np.zeros_like(p)
                rq, r1, r2 = p.astype(np.float64), np.zeros(shape), np.zeros(shape)
                for t, g in enumerate(grads, start=1):
                    if name == "sgd":
                        ops.sgd_step(q, g, s1, lr=0.1, momentum=0.9, weight_decay=0.01)
                        rq, r1 = ref.sgd_step(rq, g, r1, lr=0.1, momentum=0.9, weight_decay=0.01)
                    elif name == "nesterov":
                        ops.sgd_step(q, g, s1, lr=0.1, momentum=0.9, nesterov=True)
                        rq, r1 = ref.sgd_step(rq, g, r1, lr=0.1, momentum=0.9, nesterov=True)
                    elif name == "adamw":
                        ops.adam_step(q, g, s1, s2, lr=0.01, step=t, weight_decay=0.1,
                                      decoupled=True)
                        rq, r1, r2 = ref.adam_step(rq, g, r1, r2, lr=0.01, step=t,
                                                   weight_decay=0.1, decoupled=True)
                    else:
                        ops.rmsprop_step(q, g, s1, lr=0.01, momentum=0.5, velocity=s2)
                        rq, r1, r2 = ref.rmsprop_step(rq, g, r1, lr=0.01, momentum=0.5,
                                                      velocity=r2)
                check_op(q, rq, dtype, scale=3.0)
                outs[name] = q
            check_op(np.array(ops.grad_norm(grads), dtype), np.array(ref.grad_norm(grads)),
                     dtype, reduction=p.size)
            check_op(np.array(ops.regularizer_loss(p, l1=0.1, l2=0.2), dtype),
                     np.array(ref.regularizer_loss(p, 0.1, 0.2)), dtype, reduction=p.size)
            g = grads[0].copy()
            ops.regularizer_grad(g, p, l1=0.1, l2=0.2)
            check_op(g, grads[0] + ref.regularizer_grad(p, 0.1, 0.2), dtype)
            y, ctx = ops.dropout_forward(p, 0.25, seed=99)
            np.testing.assert_array_equal(ctx.mask.astype(bool),
                                          ref.dropout_keep_mask(shape, 0.25, 99))
            check_op(y, ref.dropout(p, 0.25, 99), dtype)
    finally:
        fastnn.set_isa(prev)
