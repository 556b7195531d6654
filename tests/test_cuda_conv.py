"""The CUDA convolution and pooling kernels, and the device-array path of the conv/pool ops.

Everywhere: the CUDA kernels take the Numba kernels' names and parameters (fastnn._cuda when it
was built, fastnn.cuda.device_kernel always); the bindings refuse bad arguments before any
device work; the ops route device arrays to the device kernels (checked with NumPy arrays
dressed as device arrays and host kernels standing in for the CUDA ones), and give a clear
RuntimeError where no device exists. With a GPU: every kernel against fastnn.reference (float64)
on awkward shapes, both dtypes, through the ops with numba.cuda device arrays and directly on
NumPy arrays; empty reductions; strided views; determinism.
"""
from __future__ import annotations

import importlib
import inspect
import re

import numpy as np
import pytest

from fastnn import cuda as fcuda
from fastnn import ops
from fastnn import reference as R
from fastnn.ops import _image
from helpers import check_op

DTYPES = [np.float32, np.float64]
CONV_KERNELS = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"]
POOL_KERNELS = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                "avg_pool2d_backward"]
KERNELS = [("conv", n) for n in CONV_KERNELS] + [("pool", n) for n in POOL_KERNELS]


def gpu(fn):
    """Marks a test as needing a CUDA device, and skips it (saying why) where there is none."""
    fn = pytest.mark.skipif(not fcuda.is_available(),
                            reason="no CUDA device: " + fcuda.unavailable_reason())(fn)
    return pytest.mark.gpu(fn)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups): odd sizes, and sizes that
# reach both tile shapes (<= 8 and > 8 output channels per group), several row and column
# tiles, a reduction deeper than one k step, and a weight gradient whose reduction is split.
CONV = {
    "3x3_pad1": (2, 3, 7, 9, 4, (3, 3), 1, 1, 1, 1),
    "stride3_nonsquare": (2, 2, 11, 10, 3, (2, 4), (3, 2), (1, 2), 1, 1),
    "dilation2": (1, 2, 9, 9, 3, (3, 3), 1, 2, 2, 1),
    "groups2_wide": (2, 6, 9, 7, 34, (3, 2), (1, 2), 1, 1, 2),
    "depthwise": (1, 4, 7, 7, 4, (3, 3), 1, 1, 1, 4),
    "depthwise_x2": (1, 3, 5, 6, 6, (3, 3), 2, 1, 1, 3),
    "pad_beyond_half": (1, 2, 4, 5, 3, (3, 3), 1, 3, 1, 1),
    "same_even": (2, 2, 6, 5, 3, (2, 4), 1, "same", 1, 1),
    "everything": (2, 6, 10, 9, 4, (3, 2), (2, 3), (2, 1), (2, 2), 2),
    "1x1_image_padded": (1, 2, 1, 1, 3, (3, 3), 1, 1, 1, 1),
    "stride_beyond_kernel": (1, 2, 9, 9, 2, (1, 1), 3, 0, 1, 1),
    "two_row_tiles": (3, 5, 17, 9, 70, (3, 3), 1, 1, 1, 1),
    "deep_reduction": (1, 40, 6, 6, 9, (3, 3), 1, 1, 1, 1),
    "split_reduction": (9, 3, 33, 65, 5, (3, 3), 1, 1, 1, 1),
}

# (N, C, H, W, kernel_size, stride, padding)
POOL = {
    "3x2_stride21_pad1": (2, 3, 7, 9, (3, 2), (2, 1), (1, 1)),
    "default_stride_pad1": (1, 2, 5, 5, 3, None, 1),
    "nonsquare_stride32": (2, 2, 6, 5, (2, 4), (3, 2), (1, 2)),
    "1x1": (1, 1, 4, 4, 1, 1, 0),
    "overlapping": (2, 2, 9, 7, 3, 2, 0),
    "overlapping_stride1": (2, 3, 8, 8, 3, 1, 1),
    "stride3": (1, 2, 10, 11, (3, 2), 3, (1, 0)),
    "1x1_image": (1, 2, 1, 1, 1, None, 0),
    "kernel_is_image": (2, 2, 4, 5, (4, 5), None, 0),
    "many_planes": (3, 70, 33, 17, 3, 2, 1),
}


def conv_case(rng, cfg, dtype):
    n, c, h, w, co, k, s, p, d, g = cfg
    x = randn(rng, (n, c, h, w), dtype)
    wt = randn(rng, (co, c // g) + pair(k), dtype)
    b = randn(rng, co, dtype)
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


def ref_args(kw):
    return kw["stride"], kw["padding"], kw["dilation"], kw["groups"]


def pool_case(rng, cfg, dtype):
    n, c, h, w, k, s, p = cfg
    x = randn(rng, (n, c, h, w), dtype)
    return x, dict(kernel_size=k, stride=s, padding=p)


def pool_args(kw):
    return kw["kernel_size"], kw["stride"], kw["padding"]


def window(kw):
    k = pair(kw["kernel_size"])
    return k[0] * k[1]


def specials(x):
    """Ties, a NaN and -inf where max pooling must pick the first of them."""
    x = x.copy()
    x[0, 0, :2, :2] = 0.5           # a tie: the first one wins
    x[-1, -1, 0, 0] = np.nan        # NaN wins over any number
    if x.shape[3] > 2:
        x[0, -1, :, 1:3] = -np.inf  # windows of -inf alone report their first element
    return x


# ---------------------------------------------------------------------------------------------
# Everywhere: names, signatures, argument checks


def _pybind_params(fn) -> list:
    first = fn.__doc__.strip().splitlines()[0]  # "name(y: object, ...) -> None"
    inside = first[first.index("(") + 1:first.rindex(")")]
    return re.findall(r"(\w+):", inside)


def _numba_params(family: str, name: str) -> list:
    nk = importlib.import_module(f"fastnn.numba_kernels.{family}")
    return list(inspect.signature(getattr(nk, name)).parameters)


@pytest.mark.parametrize("family,name", KERNELS)
def test_device_kernels_take_the_numba_signatures(family, name):
    params = _numba_params(family, name)
    assert name in fcuda.DEVICE_KERNELS
    assert list(inspect.signature(fcuda.device_kernel(name)).parameters) == params
    if not fcuda.is_compiled():
        pytest.skip("fastnn was built without fastnn._cuda: " + fcuda.unavailable_reason())
    assert _pybind_params(getattr(fcuda._cuda, name)) == params


def test_device_kernel_unknown_name():
    with pytest.raises(KeyError, match="no device kernel 'conv3d_forward'"):
        fcuda.device_kernel("conv3d_forward")


def _arg(shape, typ="f4", ptr=0):
    """An array argument of fastnn._cuda: (ptr, type, shape, strides), C-contiguous strides."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return (ptr, typ, tuple(shape), tuple(reversed(strides)))


def test_bindings_check_arguments_before_any_device_work():
    """Bad dtypes, dimensions and sizes raise in the binding or the launcher's checks, which
    run before the first CUDA call; empty outputs return without one (so all of this runs
    without a device)."""
    if not fcuda.is_compiled():
        pytest.skip("fastnn was built without fastnn._cuda: " + fcuda.unavailable_reason())
    c = fcuda._cuda
    geom = (1, 1, 0, 0, 1, 1, 1)
    y, x, w = _arg((0, 4, 3, 3)), _arg((0, 2, 5, 5)), _arg((4, 2, 3, 3))
    c.conv2d_forward(y, x, w, None, *geom)               # an empty batch: nothing to do
    c.conv2d_forward(y, x, w, _arg((4,), ptr=256), *geom)  # (no pointer is dereferenced)
    with pytest.raises(TypeError, match="mixed float32 and float64"):
        c.conv2d_forward(y, x, _arg((4, 2, 3, 3), "f8"), None, *geom)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        c.conv2d_forward(y, _arg((0, 2, 5, 5), "i8"), w, None, *geom)
    with pytest.raises(ValueError, match="w must have 4 dimensions"):
        c.conv2d_forward(y, x, _arg((4, 2, 3)), None, *geom)
    with pytest.raises(ValueError, match="does not fit"):
        c.conv2d_forward(y, x, _arg((4, 3, 3, 3)), None, *geom)
    with pytest.raises(ValueError, match="groups=2"):
        c.conv2d_forward(y, x, w, None, 1, 1, 0, 0, 1, 1, 2)
    with pytest.raises(ValueError, match="batch sizes differ"):
        c.conv2d_forward(_arg((1, 4, 3, 3)), x, w, None, *geom)
    with pytest.raises(ValueError, match="stride, dilation and groups"):
        c.conv2d_forward(y, x, w, None, 0, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="bias"):
        c.conv2d_forward(y, x, w, _arg((3,), ptr=256), *geom)
    with pytest.raises(TypeError, match="must be an array"):
        c.conv2d_forward(y, None, w, None, *geom)
    c.conv2d_backward_data(x, y, w, *geom)
    with pytest.raises(TypeError, match="x must be an array"):
        c.conv2d_backward_weight(w, None, y, None, *geom)
    c.conv2d_backward_weight(None, _arg((0,)), _arg((3, 0, 2, 2)), None, *geom)
    p = (2, 2, 2, 2, 0, 0)
    yp, xp = _arg((0, 3, 2, 2)), _arg((0, 3, 4, 4))
    c.max_pool2d_forward(yp, _arg((0, 3, 2, 2), "i8"), xp, *p)
    with pytest.raises(TypeError, match="argmax must be int64"):
        c.max_pool2d_forward(yp, _arg((0, 3, 2, 2), "f4"), xp, *p)
    with pytest.raises(ValueError, match="argmax .* must have the output's shape"):
        c.max_pool2d_forward(yp, _arg((0, 3, 2, 1), "i8"), xp, *p)
    with pytest.raises(ValueError, match="different \\(N, C\\)"):
        c.avg_pool2d_forward(_arg((0, 2, 2, 2)), xp, *p, True)
    with pytest.raises(ValueError, match="kernel and stride must be >= 1"):
        c.avg_pool2d_backward(xp, yp, 0, 2, 2, 2, 0, 0, False)
    c.max_pool2d_backward(xp, _arg((0, 3, 2, 2), "i8"), yp)
    c.avg_pool2d_backward(xp, yp, *p, False)
    with pytest.raises(ValueError, match="one value per channel"):
        c.channel_sums(_arg((2,)), _arg((0, 3, 2, 2)))
    c.add_channel_bias(_arg((0, 3, 2, 2)), _arg((3,)))


class _NoMemory:
    """A device array that only describes itself (the ops must fail before touching it)."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (0, False), "version": 3, "strides": None}


def test_ops_on_device_arrays_without_a_device_raise_a_clear_error():
    if fcuda.is_available():
        pytest.skip("a CUDA device is present")
    x, w = _NoMemory((2, 3, 8, 8)), _NoMemory((4, 3, 3, 3))
    calls = [lambda: ops.conv2d(x, w),
             lambda: ops.conv2d_forward(x, w, np.zeros(4, np.float32), padding=1),
             lambda: ops.conv2d(np.zeros((2, 3, 8, 8), np.float32), w),  # one device argument
             lambda: ops.conv_transpose2d(x, _NoMemory((3, 2, 3, 3))),
             lambda: ops.max_pool2d(x, 2),
             lambda: ops.max_pool2d_forward(x, 3, 2, 1),
             lambda: ops.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
             lambda: ops.global_avg_pool2d(x)]
    for call in calls:
        with pytest.raises(RuntimeError, match="CUDA backend cannot run here"):
            call()
    # the device kernels refuse before staging anything
    with pytest.raises(RuntimeError, match="CUDA backend cannot run here"):
        fcuda.device_kernel("max_pool2d_forward")(
            np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int64),
            np.zeros((1, 1, 2, 2), np.float32), 2, 2, 2, 2, 0, 0)


def test_device_arrays_are_checked_like_host_arrays():
    """The argument checks of the host path apply to device arrays (no device needed: they
    fail before any allocation)."""
    x = _NoMemory((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\)"):
        ops.conv2d(_NoMemory((3, 8, 8)), _NoMemory((4, 3, 3, 3)))
    with pytest.raises(TypeError, match="x must be float32 or float64, got dtype int32"):
        ops.max_pool2d(_NoMemory((2, 3, 8, 8), "<i4"), 2)
    with pytest.raises(TypeError, match="w has dtype float64 but x has float32"):
        ops.conv2d(x, _NoMemory((4, 3, 3, 3), "<f8"))
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        ops.conv2d(x, _NoMemory((4, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="b must have shape \\(4,\\)"):
        ops.conv2d(x, _NoMemory((4, 3, 3, 3)), _NoMemory((5,)))
    with pytest.raises(ValueError, match="padding .* must be at most half"):
        ops.avg_pool2d(x, 2, padding=2)


# ---------------------------------------------------------------------------------------------
# Everywhere: the ops' device path, with host kernels standing in for the CUDA ones


class _HostDevice:
    """A NumPy array dressed as a device array: __cuda_array_interface__ over its memory."""

    def __init__(self, host):
        self.host = host

    shape = property(lambda self: self.host.shape)
    dtype = property(lambda self: self.host.dtype)
    size = property(lambda self: self.host.size)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.host.shape, "typestr": self.host.dtype.str,
                "data": (self.host.ctypes.data, False), "version": 3, "strides": None}


def _host(a):
    if isinstance(a, _image.Device):
        a = a.array
    return a.host if isinstance(a, _HostDevice) else a


@pytest.fixture
def host_device(monkeypatch):
    """Send the ops' device path to the Numba kernels (and NumPy for the two bias helpers) on
    _HostDevice arrays, recording the kernel names; yields the list of calls."""
    calls = []
    nk = {"conv": importlib.import_module("fastnn.numba_kernels.conv"),
          "pool": importlib.import_module("fastnn.numba_kernels.pool")}

    def kernel(name):
        assert name in fcuda.DEVICE_KERNELS

        def run(*args):
            calls.append(name)
            args = [_host(a) for a in args]
            assert all(not hasattr(a, "__cuda_array_interface__") for a in args)
            if name == "add_channel_bias":
                args[0] += args[1][:, None, None]
            elif name == "channel_sums":
                args[0][...] = args[1].sum(axis=(0, 2, 3))
            else:
                getattr(nk["conv" if name.startswith("conv") else "pool"], name)(*args)
        return run

    monkeypatch.setattr(_image, "device_kernel", kernel)
    monkeypatch.setattr(_image, "device_empty",
                        lambda shape, dtype: _HostDevice(np.full(shape, -7, dtype)))
    yield calls


@pytest.mark.parametrize("name", ["3x3_pad1", "groups2_wide", "everything"])
def test_conv_ops_route_device_arrays_to_the_device_kernels(host_device, rng, name):
    dtype = np.float64
    x, w, b, kw = conv_case(rng, CONV[name], dtype)
    y, ctx = ops.conv2d_forward(_HostDevice(x), _HostDevice(w), _HostDevice(b), **kw)
    assert isinstance(y, _HostDevice)
    check_op(y.host, R.conv2d(x, w, b, *ref_args(kw)), dtype)
    dy = randn(rng, y.shape, dtype)
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
    dx, dw, db = ops.conv2d_backward(ctx, _HostDevice(dy))
    for got, ref in [(dx, rx), (dw, rw), (db, rb)]:
        assert isinstance(got, _HostDevice)
        check_op(got.host, ref, dtype)
    assert host_device == CONV_KERNELS
    del host_device[:]
    dx, dw, db = ops.conv2d_backward(ctx, dy, need_dw=False, need_dx=False)  # host dy
    assert dx is None and dw is None and host_device == ["channel_sums"]
    check_op(db.host, rb, dtype)
    # host weights with a device input: the output is on the device all the same
    assert isinstance(ops.conv2d(_HostDevice(x), w, b, **kw), _HostDevice)


def test_conv_transpose_ops_route_device_arrays(host_device, rng):
    dtype = np.float64
    x, w, b = randn(rng, (2, 4, 5, 6), dtype), randn(rng, (4, 3, 3, 2), dtype), randn(rng, 6,
                                                                                     dtype)
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=1, groups=2)
    args = (kw["stride"], kw["padding"], kw["output_padding"], kw["dilation"], kw["groups"])
    y, ctx = ops.conv_transpose2d_forward(_HostDevice(x), _HostDevice(w), b, **kw)
    check_op(y.host, R.conv_transpose2d(x, w, b, *args), dtype)
    assert host_device == ["conv2d_backward_data", "add_channel_bias"]
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, _HostDevice(dy))
    rx, rw, rb = R.conv_transpose2d_backward(x, w, b, dy, *args)
    for got, ref in [(dx, rx), (dw, rw), (db, rb)]:
        check_op(got.host, ref, dtype)
    assert host_device[2:] == ["conv2d_forward", "conv2d_backward_weight", "channel_sums"]


def test_pool_ops_route_device_arrays(host_device, rng):
    dtype = np.float32
    x, kw = pool_case(rng, POOL["3x2_stride21_pad1"], dtype)
    y, ctx = ops.max_pool2d_forward(_HostDevice(x), **kw)
    ry, rarg = R.max_pool2d(x, *pool_args(kw))
    check_op(y.host, ry, dtype)
    np.testing.assert_array_equal(ctx.argmax.host, rarg)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.max_pool2d_backward(ctx, dy)  # a host dy after a device forward: on the device
    check_op(dx.host, R.max_pool2d_backward(x, dy, *pool_args(kw)), dtype)
    for cip in (True, False):
        y, ctx = ops.avg_pool2d_forward(_HostDevice(x), **kw, count_include_pad=cip)
        check_op(y.host, R.avg_pool2d(x, *pool_args(kw), cip), dtype, reduction=window(kw))
        (dx,) = ops.avg_pool2d_backward(ctx, _HostDevice(dy))
        check_op(dx.host, R.avg_pool2d_backward(x, dy, *pool_args(kw), cip), dtype)
    y, ctx = ops.global_avg_pool2d_forward(_HostDevice(x))
    check_op(y.host, R.global_avg_pool2d(x), dtype, reduction=63)
    (dx,) = ops.global_avg_pool2d_backward(ctx, _HostDevice(np.ones(y.shape, dtype)))
    check_op(dx.host, R.global_avg_pool2d_backward(x, np.ones(y.shape)), dtype)
    assert host_device == (["max_pool2d_forward", "max_pool2d_backward"]
                           + ["avg_pool2d_forward", "avg_pool2d_backward"] * 3)


def test_host_arrays_keep_the_host_kernels(host_device, rng):
    x, w, b, kw = conv_case(rng, CONV["3x3_pad1"], np.float32)
    assert isinstance(ops.conv2d(x, w, b, **kw), np.ndarray)
    assert isinstance(ops.max_pool2d(x, 2), np.ndarray)
    assert host_device == []


def test_host_fallback_hands_device_arrays_to_the_device_kernel(monkeypatch):
    """fastnn.cuda.<image kernel> is the host kernel; given a device array it runs the CUDA
    one (here: a stand-in), instead of refusing it as for kernels without a CUDA version."""
    seen = []
    monkeypatch.setitem(fcuda._DEVICE, "max_pool2d_backward", lambda *a: seen.append(a))
    host = type("HostKernels", (), {"max_pool2d_backward": staticmethod(lambda *a: None)})
    monkeypatch.setattr(fcuda, "_host_provider", lambda: host)
    monkeypatch.delitem(vars(fcuda), "max_pool2d_backward", raising=False)
    try:
        fn = fcuda.max_pool2d_backward
        fn(np.zeros(1), np.zeros(1, np.int64), np.zeros(1))
        assert seen == []
        dev = _NoMemory((1,))
        fn(np.zeros(1), np.zeros(1, np.int64), dev)
        assert len(seen) == 1 and seen[0][2] is dev
    finally:
        vars(fcuda).pop("max_pool2d_backward", None)


# ---------------------------------------------------------------------------------------------
# With a GPU: the kernels against the float64 reference


@pytest.fixture
def nbcuda():
    """numba.cuda, for device arrays (skips where numba cannot reach the GPU)."""
    from numba import cuda as nb
    if not nb.is_available():
        pytest.skip("numba.cuda cannot use the device")
    return nb


def _on_device(a):
    assert hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)
    return a.copy_to_host()


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONV))
def test_conv2d_device_matches_reference(nbcuda, rng, dtype, name):
    x, w, b, kw = conv_case(rng, CONV[name], dtype)
    red = w.shape[1] * w.shape[2] * w.shape[3]
    y, ctx = ops.conv2d_forward(nbcuda.to_device(x), nbcuda.to_device(w), nbcuda.to_device(b),
                                **kw)
    check_op(_on_device(y), R.conv2d(x, w, b, *ref_args(kw)), dtype, reduction=red)
    y0 = ops.conv2d(nbcuda.to_device(x), nbcuda.to_device(w), None, **kw)
    check_op(_on_device(y0), R.conv2d(x, w, None, *ref_args(kw)), dtype, reduction=red)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv2d_backward(ctx, nbcuda.to_device(dy))
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
    n, co, oh, ow = y.shape
    check_op(_on_device(dx), rx, dtype,
             reduction=(co // kw["groups"]) * w.shape[2] * w.shape[3])
    check_op(_on_device(dw), rw, dtype, reduction=n * oh * ow)
    check_op(_on_device(db), rb, dtype, reduction=n * oh * ow)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", [
    # (N, C_in, H, W, C_out/groups, kernel, stride, padding, output_padding, dilation, groups)
    (2, 3, 5, 4, 2, (3, 3), 2, 1, 1, 1, 1),
    (1, 4, 6, 5, 3, (2, 3), (1, 2), (0, 1), (0, 1), (2, 1), 2),
    (2, 20, 7, 9, 12, (3, 3), 1, 1, 0, 1, 1),
    (1, 1, 1, 1, 3, (1, 1), 1, 0, 0, 1, 1)])
def test_conv_transpose2d_device_matches_reference(nbcuda, rng, dtype, cfg):
    n, c, h, wd, cog, k, s, p, op_, d, g = cfg
    x, w, b = randn(rng, (n, c, h, wd), dtype), randn(rng, (c, cog) + k, dtype), randn(
        rng, cog * g, dtype)
    kw = dict(stride=s, padding=p, output_padding=op_, dilation=d, groups=g)
    args = (s, p, op_, d, g)
    y, ctx = ops.conv_transpose2d_forward(nbcuda.to_device(x), nbcuda.to_device(w),
                                          nbcuda.to_device(b), **kw)
    check_op(_on_device(y), R.conv_transpose2d(x, w, b, *args), dtype, reduction=c * 9)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, nbcuda.to_device(dy))
    rx, rw, rb = R.conv_transpose2d_backward(x, w, b, dy, *args)
    check_op(_on_device(dx), rx, dtype, reduction=cog * 9)
    check_op(_on_device(dw), rw, dtype, reduction=dy[:, :1].size)
    check_op(_on_device(db), rb, dtype, reduction=dy[:, :1].size)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_device_strided_views_and_mixed_arguments(nbcuda, rng, dtype):
    x, w, b, kw = conv_case(rng, CONV["everything"], dtype)
    big = np.zeros(x.shape[:3] + (2 * x.shape[3] + 1,), dtype)
    big[..., 1::2] = x
    dx_view = nbcuda.to_device(big)[..., 1::2]   # every other column, from an odd start
    big_w = np.zeros((2 * w.shape[0],) + w.shape[1:], dtype)
    big_w[1::2] = w
    w_view = nbcuda.to_device(big_w)[1::2]        # every other output channel
    ref = R.conv2d(x, w, b, *ref_args(kw))
    red = w.shape[1] * w.shape[2] * w.shape[3]
    y, ctx = ops.conv2d_forward(dx_view, w_view, b, **kw)   # a host bias
    check_op(_on_device(y), ref, dtype, reduction=red)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv2d_backward(ctx, dy)                # a host dy
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
    check_op(_on_device(dx), rx, dtype, reduction=12)
    check_op(_on_device(dw), rw, dtype, reduction=dy[:, :1].size)
    check_op(_on_device(db), rb, dtype, reduction=dy[:, :1].size)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_device_empty_reductions(nbcuda, rng, dtype):
    # no input channels: y is the bias, dw is empty, db still sums dy
    x, w, b = np.zeros((2, 0, 5, 5), dtype), np.zeros((3, 0, 3, 3), dtype), randn(rng, 3, dtype)
    y, ctx = ops.conv2d_forward(nbcuda.to_device(x), nbcuda.to_device(w), nbcuda.to_device(b),
                                padding=1)
    check_op(_on_device(y), np.broadcast_to(b[:, None, None], (2, 3, 5, 5)), dtype)
    dy = randn(rng, (2, 3, 5, 5), dtype)
    dx, dw, db = ops.conv2d_backward(ctx, nbcuda.to_device(dy))
    assert dx.shape == x.shape and dw.shape == w.shape
    check_op(_on_device(db), dy.astype(np.float64).sum(axis=(0, 2, 3)), dtype, reduction=50)
    # an empty batch: the weight and bias gradients are zeros
    x, w, b = np.zeros((0, 2, 5, 5), dtype), randn(rng, (3, 2, 3, 3), dtype), randn(rng, 3,
                                                                                   dtype)
    y, ctx = ops.conv2d_forward(nbcuda.to_device(x), nbcuda.to_device(w), nbcuda.to_device(b))
    assert y.shape == (0, 3, 3, 3)
    dx, dw, db = ops.conv2d_backward(ctx, nbcuda.to_device(np.zeros(y.shape, dtype)))
    assert (_on_device(dw) == 0).all() and (_on_device(db) == 0).all()
    # no output channels: nothing depends on x
    x, w = randn(rng, (2, 2, 5, 5), dtype), np.zeros((0, 2, 3, 3), dtype)
    y, ctx = ops.conv2d_forward(nbcuda.to_device(x), nbcuda.to_device(w))
    dx, _, _ = ops.conv2d_backward(ctx, nbcuda.to_device(np.zeros(y.shape, dtype)))
    assert (_on_device(dx) == 0).all()


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family,name", KERNELS)
def test_device_kernels_on_host_arrays_write_every_output(rng, dtype, family, name):
    """The kernels called directly with NumPy arrays (staged through the device), outputs
    arriving as NaN (and -5 for argmax): every element is written, and right."""
    if family == "conv":
        x, w, b, kw = conv_case(rng, CONV["everything"], dtype)
        geom = (2, 3, 2, 1, 2, 2, 2)  # kw above, as (sh, sw, ph, pw, dil_h, dil_w, groups)
        ry = R.conv2d(x, w, b, *ref_args(kw))
        dy = randn(rng, ry.shape, dtype)
        rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
        outs, ins, want, red = {
            "conv2d_forward": ([ry], (x, w, b), [ry], 12),
            "conv2d_backward_data": ([x], (dy, w), [rx], 8),
            "conv2d_backward_weight": ([w, b], (dy, x), [rw, rb], dy[:, :1].size)}[name]
        args = ins + geom
    else:
        x, kw = pool_case(rng, POOL["overlapping_stride1"], dtype)
        x = specials(x)
        win = (3, 3, 1, 1, 1, 1)
        ry, rarg = R.max_pool2d(x, 3, 1, 1)
        dy = randn(rng, ry.shape, dtype)
        outs, args, want = {
            "max_pool2d_forward": ([ry, rarg], (x,) + win, [ry, rarg]),
            "max_pool2d_backward": ([x], (rarg, dy), [R.max_pool2d_backward(x, dy, 3, 1, 1)]),
            "avg_pool2d_forward": ([ry], (x,) + win + (False,), [R.avg_pool2d(x, 3, 1, 1,
                                                                              False)]),
            "avg_pool2d_backward": ([x], (dy,) + win + (False,),
                                    [R.avg_pool2d_backward(x, dy, 3, 1, 1, False)])}[name]
        red = 9
    got = [np.full(o.shape, -5, np.int64) if o.dtype == np.int64 else
           np.full(o.shape, np.nan, dtype) for o in outs]
    fcuda.device_kernel(name)(*got, *args)
    for g, e in zip(got, want):
        if g.dtype == np.int64:
            np.testing.assert_array_equal(g, e)
        else:
            with np.errstate(invalid="ignore"):
                check_op(g, e, dtype, reduction=red)


@gpu
def test_conv_backward_weight_is_deterministic(nbcuda, rng):
    """The split reduction adds its chunks in a fixed order: the same bits on every run."""
    x, w, b, kw = conv_case(rng, CONV["split_reduction"], np.float32)
    y, ctx = ops.conv2d_forward(nbcuda.to_device(x), nbcuda.to_device(w), nbcuda.to_device(b),
                                **kw)
    dy = nbcuda.to_device(randn(rng, y.shape, np.float32))
    first = [_on_device(g) for g in ops.conv2d_backward(ctx, dy)]
    for _ in range(3):
        again = [_on_device(g) for g in ops.conv2d_backward(ctx, dy)]
        for a, b_ in zip(first, again):
            np.testing.assert_array_equal(a, b_)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(POOL))
def test_pool_device_matches_reference(nbcuda, rng, dtype, name):
    x, kw = pool_case(rng, POOL[name], dtype)
    x = specials(x)
    a = pool_args(kw)
    y, ctx = ops.max_pool2d_forward(nbcuda.to_device(x), **kw)
    ry, rarg = R.max_pool2d(x, *a)
    check_op(_on_device(y), ry, dtype)
    np.testing.assert_array_equal(_on_device(ctx.argmax), rarg)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.max_pool2d_backward(ctx, nbcuda.to_device(dy))
    with np.errstate(invalid="ignore"):
        check_op(_on_device(dx), R.max_pool2d_backward(x, dy, *a), dtype, reduction=window(kw))
    xf = np.nan_to_num(x, nan=0.25, neginf=-3.0)  # finite input for the averages
    for cip in (True, False):
        y, ctx = ops.avg_pool2d_forward(nbcuda.to_device(xf), **kw, count_include_pad=cip)
        check_op(_on_device(y), R.avg_pool2d(xf, *a, cip), dtype, reduction=window(kw))
        (dx,) = ops.avg_pool2d_backward(ctx, nbcuda.to_device(dy))
        check_op(_on_device(dx), R.avg_pool2d_backward(xf, dy, *a, cip), dtype,
                 reduction=window(kw))
    y, ctx = ops.global_avg_pool2d_forward(nbcuda.to_device(xf))
    check_op(_on_device(y), R.global_avg_pool2d(xf), dtype, reduction=xf[0, 0].size)
    g = randn(rng, y.shape, dtype)
    (dx,) = ops.global_avg_pool2d_backward(ctx, nbcuda.to_device(g))
    check_op(_on_device(dx), R.global_avg_pool2d_backward(xf, g), dtype)


@gpu
def test_pool_device_strided_views_and_determinism(nbcuda, rng):
    dtype = np.float32
    x, kw = pool_case(rng, POOL["overlapping_stride1"], dtype)
    big = np.zeros((x.shape[0], 2 * x.shape[1]) + x.shape[2:], dtype)
    big[:, ::2] = x
    view = nbcuda.to_device(big)[:, ::2]         # every other channel
    a = pool_args(kw)
    y, ctx = ops.max_pool2d_forward(view, **kw)
    ry, rarg = R.max_pool2d(x, *a)
    check_op(_on_device(y), ry, dtype)
    np.testing.assert_array_equal(_on_device(ctx.argmax), rarg)
    # a 3x3 window at stride 1: up to 9 windows share a maximum, added in a fixed order
    dy = nbcuda.to_device(randn(rng, y.shape, dtype))
    first = _on_device(ops.max_pool2d_backward(ctx, dy)[0])
    check_op(first, R.max_pool2d_backward(x, dy.copy_to_host(), *a), dtype, reduction=9)
    for _ in range(3):
        np.testing.assert_array_equal(_on_device(ops.max_pool2d_backward(ctx, dy)[0]), first)
    y, ctx = ops.avg_pool2d_forward(view, **kw, count_include_pad=False)
    check_op(_on_device(y), R.avg_pool2d(x, *a, False), dtype, reduction=9)
