// fastnn._cuda: pybind11 bindings of the CUDA kernels (compiled by the host compiler only; the
// kernels sit behind the plain C++ interface of cuda/api.h).
//
// These functions take device addresses, not arrays: fastnn.cuda turns NumPy arrays (staged
// through DeviceBuffer) and __cuda_array_interface__ objects into (pointer, strides) tuples, so
// this module needs neither numba nor any device-array type. Arguments are trusted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "cuda/api.h"

namespace py = pybind11;

namespace fastnn {
namespace cuda {
namespace {

// (ptr, row stride, column stride) or None.
MatArg to_mat(const py::object& o) {
  MatArg m;
  if (o.is_none()) return m;
  auto t = o.cast<std::tuple<std::uintptr_t, index_t, index_t>>();
  m.ptr = std::get<0>(t);
  m.rs = std::get<1>(t);
  m.cs = std::get<2>(t);
  return m;
}

// (ptr, stride) or None.
VecArg to_vec(const py::object& o) {
  VecArg v;
  if (o.is_none()) return v;
  auto t = o.cast<std::tuple<std::uintptr_t, index_t>>();
  v.ptr = std::get<0>(t);
  v.stride = std::get<1>(t);
  return v;
}

// (ptr, strides) or None.
NdArg to_nd(const py::object& o) {
  NdArg a;
  if (o.is_none()) return a;
  auto t = o.cast<std::tuple<std::uintptr_t, std::vector<index_t>>>();
  const auto& s = std::get<1>(t);
  if (s.size() > static_cast<std::size_t>(kMaxDims))
    throw py::value_error("CUDA elementwise kernels take at most 8 dimensions");
  a.ptr = std::get<0>(t);
  for (std::size_t d = 0; d < s.size(); ++d) a.strides[d] = s[d];
  return a;
}

bool dense(const py::array& a) {
  return (a.flags() & (py::array::c_style | py::array::f_style)) != 0;
}

// Device memory owned by a Python object: freed when the object goes away.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t nbytes) : nbytes_(nbytes) { ptr_ = device_malloc(nbytes); }
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  std::uintptr_t ptr() const { return ptr_; }
  std::size_t nbytes() const { return nbytes_; }

  // Copies the bytes of a C- or Fortran-contiguous array (its layout is the caller's business).
  void upload(const py::array& src) {
    if (!dense(src)) throw py::value_error("upload needs a C- or Fortran-contiguous array");
    if (static_cast<std::size_t>(src.nbytes()) != nbytes_)
      throw py::value_error("upload: array has " + std::to_string(src.nbytes()) +
                            " bytes, buffer " + std::to_string(nbytes_));
    const void* p = src.data();
    py::gil_scoped_release nogil;
    copy_to_device(ptr_, p, nbytes_);
  }

  void download(py::array& dst) {
    if (!dense(dst) || !dst.writeable())
      throw py::value_error("download needs a writeable C- or Fortran-contiguous array");
    if (static_cast<std::size_t>(dst.nbytes()) != nbytes_)
      throw py::value_error("download: array has " + std::to_string(dst.nbytes()) +
                            " bytes, buffer " + std::to_string(nbytes_));
    void* p = dst.mutable_data();
    py::gil_scoped_release nogil;
    copy_to_host(p, ptr_, nbytes_);
  }

 private:
  std::uintptr_t ptr_ = 0;
  std::size_t nbytes_ = 0;
};

}  // namespace
}  // namespace cuda
}  // namespace fastnn

PYBIND11_MODULE(_cuda, m) {
  using namespace fastnn::cuda;
  m.doc() = "fastnn CUDA kernels on device pointers (use fastnn.ops, or fastnn.cuda)";

  m.def(
      "probe",
      [] {
        std::string err;
        const int n = device_count(&err);
        return py::make_tuple(n, err);
      },
      "(number of usable CUDA devices, reason when there are none); never raises.");
  m.def("use_device_of", &use_device_of, py::arg("ptr"),
        "Make the device that owns this device pointer the current one.");
  m.def(
      "stream_synchronize",
      [](std::uintptr_t s) {
        py::gil_scoped_release nogil;
        stream_synchronize(s);
      },
      py::arg("stream"), "Wait for a stream given as a __cuda_array_interface__ stream handle.");
  m.def(
      "synchronize",
      [] {
        py::gil_scoped_release nogil;
        synchronize();
      },
      "Wait for all work on the current device.");

  py::class_<DeviceBuffer>(m, "DeviceBuffer", "Device memory staging a host array.")
      .def(py::init<std::size_t>(), py::arg("nbytes"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def("upload", &DeviceBuffer::upload, py::arg("src"))
      .def("download", &DeviceBuffer::download, py::arg("dst"));

  m.def(
      "gemm",
      [](bool dbl, index_t mm, index_t n, index_t k, py::object out, py::object a, py::object b,
         py::object c, double alpha, double beta) {
        MatArg o = to_mat(out), A = to_mat(a), B = to_mat(b), C = to_mat(c);
        py::gil_scoped_release nogil;
        gemm(dbl, mm, n, k, o, A, B, C, alpha, beta);
      },
      py::arg("dbl"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("out"), py::arg("a"),
      py::arg("b"), py::arg("c"), py::arg("alpha"), py::arg("beta"),
      "out := alpha * a @ b + beta * c; matrices as (ptr, row stride, col stride) or None.");
  m.def(
      "linear",
      [](bool dbl, index_t mm, index_t n, index_t k, py::object y, py::object z, py::object x,
         py::object w, py::object b, int act, double param) {
        MatArg Y = to_mat(y), Z = to_mat(z), X = to_mat(x), W = to_mat(w);
        VecArg B = to_vec(b);
        py::gil_scoped_release nogil;
        linear(dbl, mm, n, k, Y, Z, X, W, B, act, param);
      },
      py::arg("dbl"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("y"), py::arg("z"),
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act"), py::arg("param"),
      "y := act(x @ w.T + b); z (or None) receives the pre-activation.");
  m.def(
      "linear_backward",
      [](bool dbl, index_t mm, index_t n, index_t k, py::object dx, py::object dw, py::object db,
         py::object dy, py::object x, py::object w, py::object y, py::object z, int act,
         double param) {
        MatArg DX = to_mat(dx), DW = to_mat(dw), DY = to_mat(dy), X = to_mat(x), W = to_mat(w),
               Y = to_mat(y), Z = to_mat(z);
        VecArg DB = to_vec(db);
        py::gil_scoped_release nogil;
        linear_backward(dbl, mm, n, k, DX, DW, DB, DY, X, W, Y, Z, act, param);
      },
      py::arg("dbl"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("dx"), py::arg("dw"),
      py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("z"),
      py::arg("act"), py::arg("param"), "Gradients of linear; dx, dw, db may be None.");
  m.def(
      "activation",
      [](bool dbl, std::vector<index_t> shape, py::object y, py::object x, int kind,
         double param) {
        NdArg Y = to_nd(y), X = to_nd(x);
        py::gil_scoped_release nogil;
        activation(dbl, shape, Y, X, kind, param);
      },
      py::arg("dbl"), py::arg("shape"), py::arg("y"), py::arg("x"), py::arg("kind"),
      py::arg("param"), "y := act(x); arrays as (ptr, strides).");
  m.def(
      "activation_backward",
      [](bool dbl, std::vector<index_t> shape, py::object dx, py::object dy, py::object z,
         py::object y, int kind, double param) {
        NdArg DX = to_nd(dx), DY = to_nd(dy), Z = to_nd(z), Y = to_nd(y);
        py::gil_scoped_release nogil;
        activation_backward(dbl, shape, DX, DY, Z, Y, kind, param);
      },
      py::arg("dbl"), py::arg("shape"), py::arg("dx"), py::arg("dy"), py::arg("z"), py::arg("y"),
      py::arg("kind"), py::arg("param"), "dx := dy * act'(z, y); z may be None.");
}
