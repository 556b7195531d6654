#include "cpu/losses.h"

#include <vector>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/loss_math.h"
#include "common/parallel.h"
#include "common/threading.h"

namespace fastnn {
namespace {

// Row losses are summed in fixed blocks of rows and the block sums added in block order, so the
// returned loss is the same for any thread count.
constexpr index_t kRowBlock = 256;

template <class F>
double sum_over_rows(index_t rows, double work_per_row, F&& body) {
  const index_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  auto block_sum = [&](index_t b) {
    const index_t lo = b * kRowBlock, hi = lo + kRowBlock < rows ? lo + kRowBlock : rows;
    double s = 0.0;
    for (index_t i = lo; i < hi; ++i) s += body(i);
    return s;
  };
  if (blocks <= 1) {
    DenormalGuard guard;
    return blocks ? block_sum(0) : 0.0;
  }
  std::vector<double> part(static_cast<std::size_t>(blocks), 0.0);
  const int nt = threads_for(double(rows) * work_per_row);
  parallel_for(blocks, nt, [&](index_t b, int) { part[static_cast<std::size_t>(b)] = block_sum(b); });
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

template <class T>
inline T row_sum(const T* x, index_t n) {
  T s = T(0);
  for (index_t j = 0; j < n; ++j) s += x[j];
  return s;
}

// Elementwise mean losses: each "row" handed to sum_over_rows is a run of this many elements.
constexpr index_t kRun = 1024;

template <class T, class F>
double sum_over_elements(index_t n, double work_per_elem, F&& body) {
  const index_t runs = (n + kRun - 1) / kRun;
  return sum_over_rows(runs, double(kRun) * work_per_elem, [&](index_t b) {
    const index_t lo = b * kRun, hi = lo + kRun < n ? lo + kRun : n;
    return body(lo, hi);
  });
}

}  // namespace

template <class T, class L>
double softmax_xent_sparse(T* grad, const T* logits, const L* labels, index_t rows,
                           index_t cols) {
  if (rows == 0) return 0.0;
  const T inv_n = T(1) / T(rows);
  double s = sum_over_rows(rows, double(cols) * 20.0, [&](index_t i) {
    const T* x = logits + i * cols;
    const index_t k = static_cast<index_t>(labels[i]);
    T* g = grad ? grad + i * cols : nullptr;
    // With a target of one class the loss is lse - x_k; the gradient is softmax - onehot.
    T sum;
    T lse = lmath::row_lse(g, sum, x, cols);
    if (g) {
      T sc = inv_n / sum;
      for (index_t j = 0; j < cols; ++j) g[j] *= sc;
      g[k] -= inv_n;
    }
    return double(lse - x[k]);
  });
  return s / double(rows);
}

template <class T>
double softmax_xent_dense(T* grad, const T* logits, const T* target, index_t rows,
                          index_t cols) {
  if (rows == 0) return 0.0;
  const T inv_n = T(1) / T(rows);
  double s = sum_over_rows(rows, double(cols) * 24.0, [&](index_t i) {
    const T* x = logits + i * cols;
    const T* t = target + i * cols;
    T* g = grad ? grad + i * cols : nullptr;
    T sum;
    T lse = lmath::row_lse(g, sum, x, cols);
    // sum_j t_j * (lse - x_j), written per term: lse*sum(t) - <t, x> cancels badly at |x| ~ 1e4.
    T loss = T(0), tsum = T(0);
    for (index_t j = 0; j < cols; ++j) {
      loss += t[j] * (lse - x[j]);
      tsum += t[j];
    }
    if (g) {
      // d/dx_j of sum_i t_i (lse - x_i) = softmax_j * sum(t) - t_j (targets need not sum to 1).
      T sc = tsum * inv_n / sum;
      for (index_t j = 0; j < cols; ++j) g[j] = g[j] * sc - t[j] * inv_n;
    }
    return double(loss);
  });
  return s / double(rows);
}

template <class T, class L>
double cce_sparse(T* grad, const T* probs, const L* labels, index_t rows, index_t cols, T eps) {
  if (rows == 0) return 0.0;
  const T inv_n = T(1) / T(rows);
  double s = sum_over_rows(rows, double(cols) * 2.0, [&](index_t i) {
    const T* q = probs + i * cols;
    const index_t k = static_cast<index_t>(labels[i]);
    T S = row_sum(q, cols);
    T p = q[k] / S;
    T c = lmath::clip_prob(p, eps);
    if (grad) {
      // L = -log c_k(p), p = q / S: dL/dq_j = (g_j - g_k p_k) / S with g_k = -pass / c_k.
      T gk = -lmath::clip_pass(p, eps) / c;
      T common = -gk * p / S * inv_n;
      T* g = grad + i * cols;
      for (index_t j = 0; j < cols; ++j) g[j] = common;
      g[k] += gk / S * inv_n;
    }
    return -double(lmath::m_log(c));
  });
  return s / double(rows);
}

template <class T>
double cce_dense(T* grad, const T* probs, const T* target, index_t rows, index_t cols, T eps) {
  if (rows == 0) return 0.0;
  const T inv_n = T(1) / T(rows);
  double s = sum_over_rows(rows, double(cols) * 30.0, [&](index_t i) {
    const T* q = probs + i * cols;
    const T* t = target + i * cols;
    T S = row_sum(q, cols);
    T invS = T(1) / S;
    T loss = T(0), dot = T(0);
    for (index_t j = 0; j < cols; ++j) {
      T p = q[j] * invS;
      T c = lmath::clip_prob(p, eps);
      loss -= t[j] * lmath::m_log(c);
      dot += lmath::clip_pass(p, eps) * t[j] / c * p;  // -sum_j g_j p_j
    }
    if (grad) {
      T* g = grad + i * cols;
      for (index_t j = 0; j < cols; ++j) {
        T p = q[j] * invS;
        T gj = -lmath::clip_pass(p, eps) * t[j] / lmath::clip_prob(p, eps);
        g[j] = (gj + dot) * invS * inv_n;
      }
    }
    return double(loss);
  });
  return s / double(rows);
}

template <class T>
double bce(T* grad, const T* pred, const T* target, index_t n, bool from_logits, T eps) {
  if (n == 0) return 0.0;
  const T inv_n = T(1) / T(n);
  double s = sum_over_elements<T>(n, 30.0, [&](index_t lo, index_t hi) {
    T acc = T(0);
    if (from_logits) {
      for (index_t i = lo; i < hi; ++i) acc += lmath::bce_logits(pred[i], target[i]);
      if (grad)
        for (index_t i = lo; i < hi; ++i)
          grad[i] = lmath::bce_logits_grad(pred[i], target[i]) * inv_n;
    } else {
      for (index_t i = lo; i < hi; ++i) acc += lmath::bce_prob(pred[i], target[i], eps);
      if (grad)
        for (index_t i = lo; i < hi; ++i)
          grad[i] = lmath::bce_prob_grad(pred[i], target[i], eps) * inv_n;
    }
    return double(acc);
  });
  return s / double(n);
}

template <class T>
double mse(T* grad, const T* pred, const T* target, index_t n) {
  if (n == 0) return 0.0;
  const T scale = T(2) / T(n);
  double s = sum_over_elements<T>(n, 4.0, [&](index_t lo, index_t hi) {
    T acc = T(0);
    for (index_t i = lo; i < hi; ++i) {
      T d = pred[i] - target[i];
      acc += d * d;
      if (grad) grad[i] = d * scale;
    }
    return double(acc);
  });
  return s / double(n);
}

template <class T>
double mae(T* grad, const T* pred, const T* target, index_t n) {
  if (n == 0) return 0.0;
  const T inv_n = T(1) / T(n);
  double s = sum_over_elements<T>(n, 4.0, [&](index_t lo, index_t hi) {
    T acc = T(0);
    for (index_t i = lo; i < hi; ++i) {
      T d = pred[i] - target[i];
      acc += lmath::m_abs(d);
      if (grad) grad[i] = lmath::sign0(d) * inv_n;
    }
    return double(acc);
  });
  return s / double(n);
}

template <class L>
index_t first_bad_label(const L* labels, index_t n, index_t classes) {
  for (index_t i = 0; i < n; ++i) {
    const index_t k = static_cast<index_t>(labels[i]);
    if (k < 0 || k >= classes) return i;
  }
  return -1;
}

#define FASTNN_LOSSES_L(T, L)                                                                  \
  template double softmax_xent_sparse<T, L>(T*, const T*, const L*, index_t, index_t);         \
  template double cce_sparse<T, L>(T*, const T*, const L*, index_t, index_t, T);
#define FASTNN_LOSSES(T)                                                                       \
  FASTNN_LOSSES_L(T, std::int64_t)                                                             \
  FASTNN_LOSSES_L(T, std::int32_t)                                                             \
  FASTNN_LOSSES_L(T, std::uint8_t)                                                             \
  template double softmax_xent_dense<T>(T*, const T*, const T*, index_t, index_t);             \
  template double cce_dense<T>(T*, const T*, const T*, index_t, index_t, T);                   \
  template double bce<T>(T*, const T*, const T*, index_t, bool, T);                            \
  template double mse<T>(T*, const T*, const T*, index_t);                                     \
  template double mae<T>(T*, const T*, const T*, index_t);
FASTNN_LOSSES(float)
FASTNN_LOSSES(double)
#undef FASTNN_LOSSES
#undef FASTNN_LOSSES_L
template index_t first_bad_label<std::int64_t>(const std::int64_t*, index_t, index_t);
template index_t first_bad_label<std::int32_t>(const std::int32_t*, index_t, index_t);
template index_t first_bad_label<std::uint8_t>(const std::uint8_t*, index_t, index_t);

}  // namespace fastnn
