// NumPy array -> kernel view helpers for the bindings. The ops layer has already checked dtypes,
// shapes and strides (whole multiples of the item size); these only translate.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/linear.h"

namespace fastnn {
namespace py = pybind11;

// float32 or float64 (ops/ admits nothing else): the item size tells them apart without creating
// dtype objects on every call.
inline bool is_f32(const py::array& a) { return a.itemsize() == py::ssize_t(sizeof(float)); }

// Releases the GIL for kernels with enough work to make it worth it. Dropping and re-taking the
// GIL costs ~0.1 us, about what a 32^3 product itself takes; below that, other Python threads
// gain nothing from the release and the caller pays for it.
class GilRelease {
 public:
  explicit GilRelease(double work) {
    if (work > 65536.0) state_ = PyEval_SaveThread();
  }
  ~GilRelease() {
    if (state_) PyEval_RestoreThread(state_);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

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
