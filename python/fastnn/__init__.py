"""fastnn: fast neural-network kernels with NumPy in, NumPy out, and a small training layer.

``fastnn.ops`` holds the kernels (C++ by default, CUDA and Numba as other backends);
``fastnn.reference`` the float64 NumPy references they are tested against.
"""
from ._version import __version__  # noqa: F401
from . import backend, ops  # noqa: E402
from .backend import (build_info, empty_cache, get_backend, get_isa,  # noqa: E402,F401
                      get_num_threads, set_backend, set_isa, set_num_threads,
                      available_backends)
from . import cuda  # noqa: E402,F401
from . import nn, optim, random  # noqa: E402,F401
from .nn import Sequential  # noqa: E402,F401
from .precision import (get_float32_matmul_precision,  # noqa: E402,F401
                        set_float32_matmul_precision)

backend._check_isa_env()


def __getattr__(name):
    if name == "distributed":  # imported on first use too: MPI is optional
        import importlib
        return importlib.import_module(".distributed", __name__)
    # fastnn.datasets is imported on first use: it is optional and keeps `import fastnn` fast.
    if name == "datasets":
        import importlib
        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ops", "backend", "cuda", "build_info", "get_backend", "set_backend", "get_isa",
           "set_isa", "get_num_threads", "set_num_threads", "available_backends", "empty_cache",
           "nn", "optim", "random", "Sequential", "__version__",
           "set_float32_matmul_precision", "get_float32_matmul_precision"]
