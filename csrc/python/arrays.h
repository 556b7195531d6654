// NumPy array -> kernel view helpers for the bindings. The ops layer has already checked dtypes,
// shapes and strides (whole multiples of the item size); these only translate.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/linear.h"

namespace fastnn {
namespace py = pybind11;

inline bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

template <class T>
inline Mat<T> mat(const py::array& a) {
  // ops/ never passes a view whose strides are not whole elements (it copies those first); this
  // one comparison keeps a direct caller of _C from getting silently wrong strides.
  if ((a.strides(0) | a.strides(1)) % static_cast<py::ssize_t>(sizeof(T)) != 0)
    throw py::value_error("fastnn._C: strides must be whole multiples of the item size");
  Mat<T> m;
  m.p = const_cast<T*>(static_cast<const T*>(a.data()));
  m.rows = a.shape(0);
  m.cols = a.shape(1);
  m.rs = a.strides(0) / static_cast<index_t>(sizeof(T));
  m.cs = a.strides(1) / static_cast<index_t>(sizeof(T));
  return m;
}

template <class T>
inline Mat<T> mat_or_empty(const py::object& o) {
  return o.is_none() ? Mat<T>{} : mat<T>(o.cast<py::array>());
}

template <class T>
inline Mat<const T> cmat(const py::array& a) {
  Mat<T> m = mat<T>(a);
  return Mat<const T>{m.p, m.rows, m.cols, m.rs, m.cs};
}

template <class T>
inline Mat<const T> cmat_or_empty(const py::object& o) {
  return o.is_none() ? Mat<const T>{} : cmat<T>(o.cast<py::array>());
}

template <class T>
inline T* ptr_or_null(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<T*>(o.cast<py::array>().mutable_data());
}

template <class T>
inline const T* cptr_or_null(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<const T*>(o.cast<py::array>().data());
}

}  // namespace fastnn
