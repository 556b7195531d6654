// Bindings of the loss family. Each kernel returns the mean loss as a float and, when the first
// argument is an array rather than None, writes the gradient of that mean into it in the same
// pass. Arrays are C-contiguous; integer labels are int64, int32 or uint8 (ops converted any
// other integer dtype to int64).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/losses.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
T* grad_ptr(const py::object& g) {
  return g.is_none() ? nullptr
                     : static_cast<T*>(const_cast<void*>(g.cast<py::array>().data()));
}

template <class T>
const T* rptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}

template <class L>
bool label_is(const py::array& a) {
  return a.dtype().is(py::dtype::of<L>());
}

// Calls f(const L*) with the labels' element type.
template <class F>
auto with_labels(const py::array& labels, F&& f) -> decltype(f((const std::int64_t*)nullptr)) {
  if (label_is<std::int32_t>(labels)) return f(static_cast<const std::int32_t*>(labels.data()));
  if (label_is<std::uint8_t>(labels)) return f(static_cast<const std::uint8_t*>(labels.data()));
  return f(static_cast<const std::int64_t*>(labels.data()));
}

// labels: integer (rows,) class indices, or a (rows, cols) target of the input's dtype.
template <class T>
double softmax_xent_t(py::object grad, py::array logits, py::array labels) {
  T* G = grad_ptr<T>(grad);
  const T* X = rptr<T>(logits);
  index_t rows = logits.shape(0), cols = logits.shape(1);
  if (labels.ndim() == 1) {
    return with_labels(labels, [&](auto* L) {
      py::gil_scoped_release nogil;
      return softmax_xent_sparse<T>(G, X, L, rows, cols);
    });
  }
  const T* Tg = rptr<T>(labels);
  py::gil_scoped_release nogil;
  return softmax_xent_dense<T>(G, X, Tg, rows, cols);
}

template <class T>
double cce_t(py::object grad, py::array probs, py::array labels, double eps) {
  T* G = grad_ptr<T>(grad);
  const T* P = rptr<T>(probs);
  index_t rows = probs.shape(0), cols = probs.shape(1);
  if (labels.ndim() == 1) {
    return with_labels(labels, [&](auto* L) {
      py::gil_scoped_release nogil;
      return cce_sparse<T>(G, P, L, rows, cols, T(eps));
    });
  }
  const T* Tg = rptr<T>(labels);
  py::gil_scoped_release nogil;
  return cce_dense<T>(G, P, Tg, rows, cols, T(eps));
}

template <class T>
double bce_t(py::object grad, py::array pred, py::array target, bool from_logits, double eps) {
  T* G = grad_ptr<T>(grad);
  const T *P = rptr<T>(pred), *Tg = rptr<T>(target);
  index_t n = pred.size();
  py::gil_scoped_release nogil;
  return bce<T>(G, P, Tg, n, from_logits, T(eps));
}

template <class T>
double pointwise_t(py::object grad, py::array pred, py::array target, bool abs) {
  T* G = grad_ptr<T>(grad);
  const T *P = rptr<T>(pred), *Tg = rptr<T>(target);
  index_t n = pred.size();
  py::gil_scoped_release nogil;
  return abs ? mae<T>(G, P, Tg, n) : mse<T>(G, P, Tg, n);
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def(
      "label_error",
      [](py::array labels, index_t classes) -> index_t {
        index_t n = labels.size();
        return with_labels(labels, [&](auto* L) { return first_bad_label(L, n, classes); });
      },
      py::arg("labels"), py::arg("classes"),
      "Position of the first label outside [0, classes) (int64/int32/uint8, contiguous), or -1.");
  m.def(
      "softmax_cross_entropy",
      [](py::object grad, py::array logits, py::array labels) {
        return is_f32(logits) ? softmax_xent_t<float>(grad, logits, labels)
                              : softmax_xent_t<double>(grad, logits, labels);
      },
      py::arg("grad"), py::arg("logits"), py::arg("labels"),
      "Mean softmax cross-entropy of logits (rows, cols); grad (or None) := its gradient.");
  m.def(
      "categorical_cross_entropy",
      [](py::object grad, py::array probs, py::array labels, double eps) {
        return is_f32(probs) ? cce_t<float>(grad, probs, labels, eps)
                             : cce_t<double>(grad, probs, labels, eps);
      },
      py::arg("grad"), py::arg("probs"), py::arg("labels"), py::arg("eps"),
      "Mean cross-entropy of row-normalized, clipped probabilities; grad (or None).");
  m.def(
      "binary_cross_entropy",
      [](py::object grad, py::array pred, py::array target, bool from_logits, double eps) {
        return is_f32(pred) ? bce_t<float>(grad, pred, target, from_logits, eps)
                            : bce_t<double>(grad, pred, target, from_logits, eps);
      },
      py::arg("grad"), py::arg("pred"), py::arg("target"), py::arg("from_logits"),
      py::arg("eps"), "Mean binary cross-entropy over all elements; grad (or None).");
  m.def(
      "mse",
      [](py::object grad, py::array pred, py::array target) {
        return is_f32(pred) ? pointwise_t<float>(grad, pred, target, false)
                            : pointwise_t<double>(grad, pred, target, false);
      },
      py::arg("grad"), py::arg("pred"), py::arg("target"), "Mean squared error; grad (or None).");
  m.def(
      "mae",
      [](py::object grad, py::array pred, py::array target) {
        return is_f32(pred) ? pointwise_t<float>(grad, pred, target, true)
                            : pointwise_t<double>(grad, pred, target, true);
      },
      py::arg("grad"), py::arg("pred"), py::arg("target"),
      "Mean absolute error; grad (or None).");
}

}  // namespace fastnn
