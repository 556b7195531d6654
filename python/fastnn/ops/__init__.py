"""The functional API: validate arguments once, allocate outputs, dispatch to a backend.

Op contract (every family): ``op(...)`` computes the output; ``op_forward(...)`` returns
``(output, ctx)``; ``op_backward(ctx, d_output)`` returns the gradients of the inputs and
parameters as a tuple, in argument order.
"""
from .gemm import (gemm, gemm_backward, gemm_forward, linear, linear_backward,  # noqa: F401
                   linear_forward)
from ._activations import NAMES as ACTIVATION_NAMES  # noqa: F401
from .activations import (activation, activation_backward, activation_forward,  # noqa: F401
                          log_softmax, log_softmax_backward, log_softmax_forward, maxout,
                          maxout_backward, maxout_forward, softmax, softmax_backward,
                          softmax_forward, threshold, threshold_backward, threshold_forward)
from .losses import (binary_cross_entropy, binary_cross_entropy_backward,  # noqa: F401
                     binary_cross_entropy_forward, categorical_cross_entropy,
                     categorical_cross_entropy_backward, categorical_cross_entropy_forward, mae,
                     mae_backward, mae_forward, mse, mse_backward, mse_forward,
                     softmax_cross_entropy, softmax_cross_entropy_backward,
                     softmax_cross_entropy_forward)
from .dropout import dropout, dropout_backward, dropout_forward  # noqa: F401
from .optim import (adam_step, clip_grad_norm, grad_norm, regularizer_grad,  # noqa: F401
                    regularizer_loss, rmsprop_step, sgd_step)
