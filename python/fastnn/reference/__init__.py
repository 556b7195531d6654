"""float64 NumPy references for every op: the ground truth of the tests and benchmarks."""
from .gemm import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .nn_ops import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
