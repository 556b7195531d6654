"""float64 NumPy references for every op: the ground truth of the tests and benchmarks."""
from .gemm import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .nn_ops import *  # noqa: F401,F403
