// Bindings of the elementwise family (activations). Arrays are contiguous (ops made them so).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/elementwise.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
void act_fwd_t(py::array y, py::array x, int kind, double param) {
  T* Y = static_cast<T*>(y.mutable_data());
  const T* X = static_cast<const T*>(x.data());
  index_t n = x.size();
  py::gil_scoped_release nogil;
  act_forward<T>(Y, X, n, kind, T(param));
}

template <class T>
void act_bwd_t(py::array dx, py::array dy, py::object z, py::array y, int kind, double param) {
  T* DX = static_cast<T*>(dx.mutable_data());
  const T* DY = static_cast<const T*>(dy.data());
  const T* Z = cptr_or_null<T>(z);
  const T* Y = static_cast<const T*>(y.data());
  index_t n = dy.size();
  py::gil_scoped_release nogil;
  act_backward<T>(DX, DY, Z, Y, n, kind, T(param));
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def(
      "activation",
      [](py::array y, py::array x, int kind, double param) {
        if (is_f32(x)) act_fwd_t<float>(y, x, kind, param);
        else act_fwd_t<double>(y, x, kind, param);
      },
      py::arg("y"), py::arg("x"), py::arg("kind"), py::arg("param"), "y := act(x), contiguous.");
  m.def(
      "activation_backward",
      [](py::array dx, py::array dy, py::object z, py::array y, int kind, double param) {
        if (is_f32(dy)) act_bwd_t<float>(dx, dy, z, y, kind, param);
        else act_bwd_t<double>(dx, dy, z, y, kind, param);
      },
      py::arg("dx"), py::arg("dy"), py::arg("z"), py::arg("y"), py::arg("kind"),
      py::arg("param"), "dx := dy * act'(z, y), contiguous; z may be None.");
}

}  // namespace fastnn
