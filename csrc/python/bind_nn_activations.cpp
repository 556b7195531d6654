// Bindings of the activation ops beyond the elementwise ones: softmax, log_softmax, threshold and
// maxout. Arrays are C-contiguous and 2-D (rows, cols) where a row structure exists (ops made
// them so); the GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/maxout.h"
#include "cpu/softmax.h"
#include "cpu/threshold.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
T* wptr(const py::array& a) {
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
const T* rptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}

template <class T>
void softmax_t(py::array y, py::array x, bool log) {
  T* Y = wptr<T>(y);
  const T* X = rptr<T>(x);
  index_t rows = x.shape(0), cols = x.shape(1);
  py::gil_scoped_release nogil;
  softmax_rows<T>(Y, X, rows, cols, log);
}

template <class T>
void softmax_bwd_t(py::array dx, py::array y, py::array dy, bool log) {
  T* DX = wptr<T>(dx);
  const T *Y = rptr<T>(y), *DY = rptr<T>(dy);
  index_t rows = y.shape(0), cols = y.shape(1);
  py::gil_scoped_release nogil;
  softmax_rows_backward<T>(DX, Y, DY, rows, cols, log);
}

template <class T>
void maxout_t(py::array y, py::object arg, py::array x, index_t pieces) {
  T* Y = wptr<T>(y);
  std::int32_t* A = arg.is_none() ? nullptr : wptr<std::int32_t>(arg.cast<py::array>());
  const T* X = rptr<T>(x);
  index_t rows = y.shape(0), units = y.shape(1);
  py::gil_scoped_release nogil;
  maxout_forward<T>(Y, A, X, rows, units, pieces);
}

template <class T>
void maxout_bwd_t(py::array dx, py::array arg, py::array dy, index_t pieces) {
  T* DX = wptr<T>(dx);
  const std::int32_t* A = rptr<std::int32_t>(arg);
  const T* DY = rptr<T>(dy);
  index_t rows = dy.shape(0), units = dy.shape(1);
  py::gil_scoped_release nogil;
  maxout_backward<T>(DX, A, DY, rows, units, pieces);
}

template <class T>
void threshold_t(py::array y, py::array x, double value) {
  T* Y = wptr<T>(y);
  const T* X = rptr<T>(x);
  index_t n = x.size();
  py::gil_scoped_release nogil;
  threshold_forward<T>(Y, X, n, T(value));
}

}  // namespace

void bind_nn_activations(py::module_& m) {
  m.def(
      "softmax",
      [](py::array y, py::array x) {
        if (is_f32(x)) softmax_t<float>(y, x, false);
        else softmax_t<double>(y, x, false);
      },
      py::arg("y"), py::arg("x"), "y := softmax of each row of x (rows, cols).");
  m.def(
      "log_softmax",
      [](py::array y, py::array x) {
        if (is_f32(x)) softmax_t<float>(y, x, true);
        else softmax_t<double>(y, x, true);
      },
      py::arg("y"), py::arg("x"), "y := log_softmax of each row of x (rows, cols).");
  m.def(
      "softmax_backward",
      [](py::array dx, py::array y, py::array dy) {
        if (is_f32(y)) softmax_bwd_t<float>(dx, y, dy, false);
        else softmax_bwd_t<double>(dx, y, dy, false);
      },
      py::arg("dx"), py::arg("y"), py::arg("dy"), "dx := y * (dy - sum(dy * y)) per row.");
  m.def(
      "log_softmax_backward",
      [](py::array dx, py::array y, py::array dy) {
        if (is_f32(y)) softmax_bwd_t<float>(dx, y, dy, true);
        else softmax_bwd_t<double>(dx, y, dy, true);
      },
      py::arg("dx"), py::arg("y"), py::arg("dy"), "dx := dy - exp(y) * sum(dy) per row.");
  m.def(
      "threshold",
      [](py::array y, py::array x, double value) {
        if (is_f32(x)) threshold_t<float>(y, x, value);
        else threshold_t<double>(y, x, value);
      },
      py::arg("y"), py::arg("x"), py::arg("value"), "y := 1 where x > value else 0.");
  m.def(
      "maxout",
      [](py::array y, py::object arg, py::array x, index_t pieces) {
        if (is_f32(x)) maxout_t<float>(y, arg, x, pieces);
        else maxout_t<double>(y, arg, x, pieces);
      },
      py::arg("y"), py::arg("arg"), py::arg("x"), py::arg("pieces"),
      "y (rows, units) := max over pieces of x (rows, units*pieces); arg (int32 or None) := "
      "the winning piece.");
  m.def(
      "maxout_backward",
      [](py::array dx, py::array arg, py::array dy, index_t pieces) {
        if (is_f32(dy)) maxout_bwd_t<float>(dx, arg, dy, pieces);
        else maxout_bwd_t<double>(dx, arg, dy, pieces);
      },
      py::arg("dx"), py::arg("arg"), py::arg("dy"), py::arg("pieces"),
      "dx := dy routed to the winning piece, zero elsewhere.");
}

}  // namespace fastnn
