// Bindings of dropout. The mask is a function of (seed, element index) only (common/rng.h), the
// same on every backend; the GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/dropout.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
void dropout_t(py::array y, py::object mask, py::array x, double rate, std::uint64_t seed) {
  T* Y = static_cast<T*>(const_cast<void*>(y.data()));
  std::uint8_t* M = mask.is_none() ? nullptr
                                   : static_cast<std::uint8_t*>(
                                         const_cast<void*>(mask.cast<py::array>().data()));
  const T* X = static_cast<const T*>(x.data());
  index_t n = x.size();
  py::gil_scoped_release nogil;
  dropout_forward<T>(Y, M, X, n, rate, seed);
}

template <class T>
void dropout_bwd_t(py::array dx, py::array mask, py::array dy, double rate) {
  T* DX = static_cast<T*>(const_cast<void*>(dx.data()));
  const std::uint8_t* M = static_cast<const std::uint8_t*>(mask.data());
  const T* DY = static_cast<const T*>(dy.data());
  index_t n = dy.size();
  py::gil_scoped_release nogil;
  dropout_backward<T>(DX, M, DY, n, rate);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout",
      [](py::array y, py::object mask, py::array x, double rate, std::uint64_t seed) {
        if (is_f32(x)) dropout_t<float>(y, mask, x, rate, seed);
        else dropout_t<double>(y, mask, x, rate, seed);
      },
      py::arg("y"), py::arg("mask"), py::arg("x"), py::arg("rate"), py::arg("seed"),
      "y := x * keep / (1 - rate); mask (uint8 or None) := keep.");
  m.def(
      "dropout_backward",
      [](py::array dx, py::array mask, py::array dy, double rate) {
        if (is_f32(dy)) dropout_bwd_t<float>(dx, mask, dy, rate);
        else dropout_bwd_t<double>(dx, mask, dy, rate);
      },
      py::arg("dx"), py::arg("mask"), py::arg("dy"), py::arg("rate"),
      "dx := dy * mask / (1 - rate).");
}

}  // namespace fastnn
