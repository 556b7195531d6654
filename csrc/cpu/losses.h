// Loss kernels. Each returns the mean loss (accumulated in double) and, when `grad` is non-null,
// writes the gradient of that mean with respect to its first input in the same pass.
// All buffers are contiguous; `rows` x `cols` for the class losses, `n` elements otherwise.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// Softmax fused with cross-entropy, from logits. Integer labels L (int64, int32 or uint8;
// 0 <= label < cols, checked by the caller) or a (rows, cols) target distribution. Mean over rows.
template <class T, class L>
double softmax_xent_sparse(T* grad, const T* logits, const L* labels, index_t rows, index_t cols);
template <class T>
double softmax_xent_dense(T* grad, const T* logits, const T* target, index_t rows, index_t cols);

// Cross-entropy from probabilities, as Keras: each row is divided by its sum, clipped into
// [eps, 1 - eps], and -sum(t * log p) is averaged over rows.
template <class T, class L>
double cce_sparse(T* grad, const T* probs, const L* labels, index_t rows, index_t cols, T eps);
template <class T>
double cce_dense(T* grad, const T* probs, const T* target, index_t rows, index_t cols, T eps);

// Binary cross-entropy, mean over all elements: from logits (stable softplus form) or from
// probabilities clipped into [eps, 1 - eps].
template <class T>
double bce(T* grad, const T* pred, const T* target, index_t n, bool from_logits, T eps);

// The position of the first label outside [0, classes), or -1 when all are in range.
template <class L>
index_t first_bad_label(const L* labels, index_t n, index_t classes);

// Mean squared and mean absolute error over all elements.
template <class T>
double mse(T* grad, const T* pred, const T* target, index_t n);
template <class T>
double mae(T* grad, const T* pred, const T* target, index_t n);

}  // namespace fastnn
