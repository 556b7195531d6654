"""The functional API: validate arguments once, allocate outputs, dispatch to a backend.

Op contract (every family): ``op(...)`` computes the output; ``op_forward(...)`` returns
``(output, ctx)``; ``op_backward(ctx, d_output)`` returns the gradients of the inputs and
parameters as a tuple, in argument order.
"""
from .gemm import (gemm, gemm_backward, gemm_forward, linear, linear_backward,  # noqa: F401
                   linear_forward)
from ._activations import NAMES as ACTIVATION_NAMES  # noqa: F401
