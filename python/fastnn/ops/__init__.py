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
from .optim import (adam_step, adam_steps, clip_grad_norm, ema_update, grad_norm,  # noqa: F401
                    regularizer_grad, regularizer_loss, rmsprop_step, sgd_step)
from .conv import (conv2d, conv2d_backward, conv2d_forward, conv_transpose2d,  # noqa: F401
                   conv_transpose2d_backward, conv_transpose2d_forward)
from .conv_pool import conv2d_max_pool2d_backward, conv2d_max_pool2d_forward  # noqa: F401
from .pool import (avg_pool2d, avg_pool2d_backward, avg_pool2d_forward,  # noqa: F401
                   global_avg_pool2d, global_avg_pool2d_backward, global_avg_pool2d_forward,
                   max_pool2d, max_pool2d_backward, max_pool2d_forward)
from .batchnorm import (batch_norm2d, batch_norm2d_backward,  # noqa: F401
                        batch_norm2d_forward)
from .rnn import (gru, gru_backward, gru_cell, gru_cell_backward, gru_cell_forward,  # noqa: F401
                  gru_forward, lstm, lstm_backward, lstm_cell, lstm_cell_backward,
                  lstm_cell_forward, lstm_forward, rnn, rnn_backward, rnn_cell, rnn_cell_backward,
                  rnn_cell_forward, rnn_forward)
from .embedding import embedding, embedding_backward, embedding_forward  # noqa: F401
from .attention import (attention, attention_backward, attention_forward,  # noqa: F401
                        layer_norm, layer_norm_backward, layer_norm_forward)
from .rbm import (CdSteps, rbm_cd_step, rbm_cd_steps, rbm_free_energy,  # noqa: F401
                  rbm_hidden, rbm_pseudo_likelihood, rbm_visible)
