"""Numba fallbacks: the same kernel functions, with the same signatures, as ``fastnn._C``.

Imported only when the Numba backend is first used, so ``import fastnn`` stays fast.
"""
from .gemm import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .nn_kernels import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
