// Fused optimizer updates (one pass over param, grad and state, in place) and the reductions the
// training loop needs around them (global gradient norm, L1/L2 penalties).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// PyTorch's SGD: velocity may be null when momentum == 0.
template <class T>
void sgd_update(T* param, T* velocity, const T* grad, index_t n, double lr, double momentum,
                bool nesterov, double weight_decay);

// Keras's Adam (eps added to sqrt(v)); step is 1-based. decoupled: AdamW's decay p -= lr*wd*p.
template <class T>
void adam_update(T* param, T* m, T* v, const T* grad, index_t n, double lr, double beta1,
                 double beta2, double eps, std::int64_t step, double weight_decay,
                 bool decoupled);

// Keras's RMSprop (eps inside the sqrt); velocity may be null when momentum == 0.
template <class T>
void rmsprop_update(T* param, T* sq, T* velocity, const T* grad, index_t n, double lr,
                    double rho, double eps, double momentum);

// sum of x^2 in double.
template <class T>
double sum_squares(const T* x, index_t n);

// l1 * sum|w| + l2 * sum w^2 in double.
template <class T>
double regularizer_value(const T* w, index_t n, double l1, double l2);

// grad += l1 * sign(w) + 2 * l2 * w.
template <class T>
void regularizer_add_grad(T* grad, const T* w, index_t n, double l1, double l2);

}  // namespace fastnn
