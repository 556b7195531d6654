// fastnn._cuda: pybind11 bindings of the CUDA kernels (compiled by the host compiler only; the
// kernels sit behind the plain C++ interface of cuda/api.h).
//
// These functions take device addresses, not arrays: fastnn.cuda turns NumPy arrays (staged
// through DeviceBuffer) and __cuda_array_interface__ objects into (pointer, strides) tuples, so
// this module needs neither numba nor any device-array type. Arguments are trusted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <initializer_list>
#include <map>
#include <string>
#include <tuple>
#include <utility>
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

// The array arguments of the image kernels: (ptr, type, shape, strides) with type "f4", "f8"
// or "i8" (NumPy's dtype.str without the byte order), shape and strides (in elements) of the
// same length. fastnn.cuda builds them; the checks here guard the dtype dispatch and the number
// of dimensions, and the launchers check the sizes against each other.
struct ImageArg {
  Array4 a;
  std::string type;
};

ImageArg to_image(const py::object& o, const char* name, std::size_t ndim, bool optional) {
  ImageArg r;
  if (o.is_none()) {
    if (!optional) throw py::type_error(std::string(name) + " must be an array, got None");
    return r;
  }
  auto t = o.cast<std::tuple<std::uintptr_t, std::string, std::vector<index_t>,
                             std::vector<index_t>>>();
  const auto& shape = std::get<2>(t);
  const auto& strides = std::get<3>(t);
  if (shape.size() != ndim || strides.size() != ndim)
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) +
                          " dimensions, got " + std::to_string(shape.size()));
  r.a.ptr = std::get<0>(t);
  r.type = std::get<1>(t);
  for (std::size_t d = 0; d < ndim; ++d) {
    r.a.dim[d] = shape[d];
    r.a.stride[d] = strides[d];
  }
  return r;
}

// True for float64, false for float32; anything else is a TypeError naming the argument.
bool is_double(const ImageArg& a, const char* name) {
  if (a.type == "f8") return true;
  if (a.type == "f4") return false;
  throw py::type_error(std::string(name) + " must be float32 or float64, got type " + a.type);
}

// The dtype every float array of a call shares (absent ones are skipped).
bool float_type(std::initializer_list<std::pair<const ImageArg*, const char*>> args) {
  int dbl = -1;
  for (const auto& [arg, name] : args) {
    if (arg->type.empty()) continue;  // an absent (None) argument
    const int d = is_double(*arg, name) ? 1 : 0;
    if (dbl >= 0 && d != dbl)
      throw py::type_error(std::string("mixed float32 and float64 arrays (") + name + ")");
    dbl = d;
  }
  return dbl == 1;
}

void require_index(const ImageArg& a, const char* name) {
  if (a.type != "i8")
    throw py::type_error(std::string(name) + " must be int64, got type " + a.type);
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
  m.def("rbm_hidden", &rbm_hidden, py::call_guard<py::gil_scoped_release>(),
      py::arg("dbl"), py::arg("batch"), py::arg("nv"), py::arg("nh"), py::arg("h"),
      py::arg("v"), py::arg("w"), py::arg("b_hid"), py::arg("sample"), py::arg("seed"),
      "h := sigmoid(v @ w.T + b_hid), sampled when sample (C-contiguous device arrays).");
  m.def("rbm_visible", &rbm_visible, py::call_guard<py::gil_scoped_release>(),
      py::arg("dbl"), py::arg("batch"), py::arg("nv"), py::arg("nh"), py::arg("v"),
      py::arg("h"), py::arg("w"), py::arg("b_vis"), py::arg("gaussian"), py::arg("sample"),
      py::arg("seed"), "v := visible means given h, or samples (C-contiguous device arrays).");
  m.def(
      "rbm_cd_step",
      [](bool dbl, index_t batch, index_t nv, index_t nh, index_t particles, std::uintptr_t w,
         std::uintptr_t b_vis, std::uintptr_t b_hid, std::uintptr_t chain, std::uintptr_t vel_w,
         std::uintptr_t vel_b_vis, std::uintptr_t vel_b_hid, std::uintptr_t v0, int k, double lr,
         double momentum, double weight_decay, bool gaussian, bool compute_error,
         std::uint64_t seed) {
        RbmStepArgs s;
        s.batch = batch; s.nv = nv; s.nh = nh; s.particles = particles;
        s.w = w; s.b_vis = b_vis; s.b_hid = b_hid; s.chain = chain;
        s.vel_w = vel_w; s.vel_b_vis = vel_b_vis; s.vel_b_hid = vel_b_hid; s.v0 = v0;
        s.k = k; s.lr = lr; s.momentum = momentum; s.weight_decay = weight_decay;
        s.gaussian = gaussian; s.compute_error = compute_error; s.seed = seed;
        py::gil_scoped_release nogil;
        return rbm_cd_step(dbl, s);
      },
      py::arg("dbl"), py::arg("batch"), py::arg("nv"), py::arg("nh"), py::arg("particles"),
      py::arg("w"), py::arg("b_vis"), py::arg("b_hid"), py::arg("chain"), py::arg("vel_w"),
      py::arg("vel_b_vis"), py::arg("vel_b_hid"), py::arg("v0"), py::arg("k"), py::arg("lr"),
      py::arg("momentum"), py::arg("weight_decay"), py::arg("gaussian"),
      py::arg("compute_error"), py::arg("seed"),
      "One CD-k / PCD update in place (device addresses, 0 for absent); returns the error.");
  m.def("rbm_free_energy", &rbm_free_energy, py::call_guard<py::gil_scoped_release>(),
      py::arg("dbl"), py::arg("batch"), py::arg("nv"), py::arg("nh"), py::arg("out"),
      py::arg("v"), py::arg("w"), py::arg("b_vis"), py::arg("b_hid"), py::arg("gaussian"),
      "out (float64) := free energy of each row of v.");
  m.def("rbm_pseudo_likelihood", &rbm_pseudo_likelihood,
      py::call_guard<py::gil_scoped_release>(),
      py::arg("dbl"), py::arg("batch"), py::arg("nv"), py::arg("nh"), py::arg("out"),
      py::arg("v"), py::arg("w"), py::arg("b_vis"), py::arg("b_hid"), py::arg("seed"),
      "out (float64) := per-row pseudo-likelihood, as scikit-learn's.");
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

  // The image kernels: the names and parameter names of the CPU kernel modules (numba_kernels),
  // arrays as (ptr, type, shape, strides) tuples (see to_image).
  m.def(
      "conv2d_forward",
      [](py::object y, py::object x, py::object w, py::object b, index_t sh, index_t sw,
         index_t ph, index_t pw, index_t dil_h, index_t dil_w, index_t groups, int act,
         double act_param) {
        const ImageArg Y = to_image(y, "y", 4, false), X = to_image(x, "x", 4, false),
                       W = to_image(w, "w", 4, false), B = to_image(b, "b", 1, true);
        const bool dbl = float_type({{&Y, "y"}, {&X, "x"}, {&W, "w"}, {&B, "b"}});
        const ConvGeometry g{sh, sw, ph, pw, dil_h, dil_w, groups};
        py::gil_scoped_release nogil;
        conv2d_forward(dbl, Y.a, X.a, W.a, B.a, g);
        if (act != 0) {  // in place over y, as the elementwise kernels allow
          NdArg yn;
          yn.ptr = Y.a.ptr;
          std::vector<index_t> shape(4);
          for (int d = 0; d < 4; ++d) {
            shape[d] = Y.a.dim[d];
            yn.strides[d] = Y.a.stride[d];
          }
          activation(dbl, shape, yn, yn, act, act_param);
        }
      },
      py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      py::arg("act") = 0, py::arg("act_param") = 0.0,
      "y := act(conv2d(x, w) + b) (b may be None; act 0: none); ph/pw are the top/left "
      "padding.");
  m.def(
      "conv2d_backward_data",
      [](py::object dx, py::object dy, py::object w, index_t sh, index_t sw, index_t ph,
         index_t pw, index_t dil_h, index_t dil_w, index_t groups) {
        const ImageArg DX = to_image(dx, "dx", 4, false), DY = to_image(dy, "dy", 4, false),
                       W = to_image(w, "w", 4, false);
        const bool dbl = float_type({{&DX, "dx"}, {&DY, "dy"}, {&W, "w"}});
        const ConvGeometry g{sh, sw, ph, pw, dil_h, dil_w, groups};
        py::gil_scoped_release nogil;
        conv2d_backward_data(dbl, DX.a, DY.a, W.a, g);
      },
      py::arg("dx"), py::arg("dy"), py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
      py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      "dx := the gradient of conv2d with respect to its input.");
  m.def(
      "conv2d_backward_weight",
      [](py::object dw, py::object db, py::object dy, py::object x, index_t sh, index_t sw,
         index_t ph, index_t pw, index_t dil_h, index_t dil_w, index_t groups) {
        const ImageArg DW = to_image(dw, "dw", 4, true), DB = to_image(db, "db", 1, true),
                       DY = to_image(dy, "dy", 4, false), X = to_image(x, "x", 4, true);
        if (!dw.is_none() && x.is_none()) throw py::type_error("x must be an array, got None");
        const bool dbl = float_type({{&DW, "dw"}, {&DB, "db"}, {&DY, "dy"}, {&X, "x"}});
        const ConvGeometry g{sh, sw, ph, pw, dil_h, dil_w, groups};
        py::gil_scoped_release nogil;
        conv2d_backward_weight(dbl, DW.a, DB.a, DY.a, X.a, g);
      },
      py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      "dw := the gradient of conv2d with respect to w, db := dy summed over (N, OH, OW); "
      "either may be None (x is not read without dw).");
  m.def(
      "add_channel_bias",
      [](py::object y, py::object b) {
        const ImageArg Y = to_image(y, "y", 4, false), B = to_image(b, "b", 1, false);
        const bool dbl = float_type({{&Y, "y"}, {&B, "b"}});
        py::gil_scoped_release nogil;
        add_channel_bias(dbl, Y.a, B.a);
      },
      py::arg("y"), py::arg("b"), "y[n, c, h, w] += b[c].");
  m.def(
      "channel_sums",
      [](py::object out, py::object x) {
        const ImageArg O = to_image(out, "out", 1, false), X = to_image(x, "x", 4, false);
        const bool dbl = float_type({{&O, "out"}, {&X, "x"}});
        py::gil_scoped_release nogil;
        channel_sums(dbl, O.a, X.a);
      },
      py::arg("out"), py::arg("x"), "out[c] := x[:, c].sum(), in a fixed order.");
  m.def(
      "max_pool2d_forward",
      [](py::object y, py::object argmax, py::object x, index_t kh, index_t kw, index_t sh,
         index_t sw, index_t ph, index_t pw) {
        const ImageArg Y = to_image(y, "y", 4, false), A = to_image(argmax, "argmax", 4, false),
                       X = to_image(x, "x", 4, false);
        require_index(A, "argmax");
        const bool dbl = float_type({{&Y, "y"}, {&X, "x"}});
        const PoolWindow p{kh, kw, sh, sw, ph, pw};
        py::gil_scoped_release nogil;
        max_pool2d_forward(dbl, Y.a, A.a, X.a, p);
      },
      py::arg("y"), py::arg("argmax"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
      py::arg("sw"), py::arg("ph"), py::arg("pw"),
      "y := window maxima of x, argmax := their flat index into the input plane (int64).");
  m.def(
      "max_pool2d_backward",
      [](py::object dx, py::object argmax, py::object dy, py::object gate) {
        const ImageArg DX = to_image(dx, "dx", 4, false),
                       A = to_image(argmax, "argmax", 4, false), DY = to_image(dy, "dy", 4, false),
                       G = to_image(gate, "gate", 4, true);
        require_index(A, "argmax");
        const bool dbl = float_type({{&DX, "dx"}, {&DY, "dy"}, {&G, "gate"}});
        py::gil_scoped_release nogil;
        max_pool2d_backward(dbl, DX.a, A.a, DY.a, G.a);
      },
      py::arg("dx"), py::arg("argmax"), py::arg("dy"), py::arg("gate") = py::none(),
      "dx := 0, then each dy element added at its argmax; with a gate (the pooled output), "
      "only where the gate is positive.");
  m.def(
      "avg_pool2d_forward",
      [](py::object y, py::object x, index_t kh, index_t kw, index_t sh, index_t sw, index_t ph,
         index_t pw, bool count_include_pad) {
        const ImageArg Y = to_image(y, "y", 4, false), X = to_image(x, "x", 4, false);
        const bool dbl = float_type({{&Y, "y"}, {&X, "x"}});
        const PoolWindow p{kh, kw, sh, sw, ph, pw};
        py::gil_scoped_release nogil;
        avg_pool2d_forward(dbl, Y.a, X.a, p, count_include_pad);
      },
      py::arg("y"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"),
      "y := window means of x, the zero padding counted in the divisor or not.");
  m.def(
      "avg_pool2d_backward",
      [](py::object dx, py::object dy, index_t kh, index_t kw, index_t sh, index_t sw,
         index_t ph, index_t pw, bool count_include_pad) {
        const ImageArg DX = to_image(dx, "dx", 4, false), DY = to_image(dy, "dy", 4, false);
        const bool dbl = float_type({{&DX, "dx"}, {&DY, "dy"}});
        const PoolWindow p{kh, kw, sh, sw, ph, pw};
        py::gil_scoped_release nogil;
        avg_pool2d_backward(dbl, DX.a, DY.a, p, count_include_pad);
      },
      py::arg("dx"), py::arg("dy"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"),
      "dx := each dy element divided by its window's divisor, spread over the window.");
  m.def(
      "rnn_call",
      [](bool dbl, bool backward, int kind, index_t B, index_t T, index_t I, index_t H,
         const std::map<std::string, std::uintptr_t>& ptrs) {
        RnnCall c;
        c.B = B; c.T = T; c.I = I; c.H = H; c.kind = kind;
        const std::pair<const char*, std::uintptr_t*> slots[] = {
            {"y", &c.y}, {"h_n", &c.h_n}, {"c_n", &c.c_n}, {"gates", &c.gates}, {"x", &c.x},
            {"h0", &c.h0}, {"c0", &c.c0}, {"w_ih", &c.w_ih}, {"w_hh", &c.w_hh},
            {"b_ih", &c.b_ih}, {"b_hh", &c.b_hh}, {"lengths", &c.lengths}, {"dx", &c.dx},
            {"dh0", &c.dh0}, {"dc0", &c.dc0}, {"dw_ih", &c.dw_ih}, {"dw_hh", &c.dw_hh},
            {"db_ih", &c.db_ih}, {"db_hh", &c.db_hh}, {"dy", &c.dy}, {"dh_n", &c.dh_n},
            {"dc_n", &c.dc_n}};
        for (const auto& kv : ptrs) {
          bool known = false;
          for (const auto& s : slots) {
            if (kv.first == s.first) {
              *s.second = kv.second;
              known = true;
            }
          }
          if (!known) throw py::value_error("rnn_call: unknown array " + kv.first);
        }
        py::gil_scoped_release nogil;
        if (backward) rnn_backward(dbl, c);
        else rnn_forward(dbl, c);
      },
      py::arg("dbl"), py::arg("backward"), py::arg("kind"), py::arg("B"), py::arg("T"),
      py::arg("I"), py::arg("H"), py::arg("ptrs"),
      "The recurrent kernels (kind 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu): device addresses of "
      "C-contiguous arrays by their kernel-signature names.");
  m.def(
      "attention_forward",
      [](py::object o, py::object lse, py::object q, py::object k, py::object v, py::object mask,
         double scale, bool causal) {
        const ImageArg O = to_image(o, "o", 4, false), L = to_image(lse, "lse", 3, false),
                       Q = to_image(q, "q", 4, false), K = to_image(k, "k", 4, false),
                       V = to_image(v, "v", 4, false), M = to_image(mask, "mask", 4, true);
        const bool dbl = float_type({{&O, "o"}, {&L, "lse"}, {&Q, "q"}, {&K, "k"}, {&V, "v"},
                                     {&M, "mask"}});
        py::gil_scoped_release nogil;
        attention_forward(dbl, O.a, L.a, Q.a, K.a, V.a, M.a, scale, causal);
      },
      py::arg("o"), py::arg("lse"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
      py::arg("scale"), py::arg("causal"),
      "o := softmax(q k^T * scale + mask) v, lse := the rows' log-sum-exp (flash attention).");
  m.def(
      "attention_backward",
      [](py::object dq, py::object dk, py::object dv, py::object o, py::object lse,
         py::object dout, py::object q, py::object k, py::object v, py::object mask,
         double scale, bool causal) {
        const ImageArg DQ = to_image(dq, "dq", 4, false), DK = to_image(dk, "dk", 4, false),
                       DV = to_image(dv, "dv", 4, false), O = to_image(o, "o", 4, false),
                       L = to_image(lse, "lse", 3, false), DO = to_image(dout, "do", 4, false),
                       Q = to_image(q, "q", 4, false), K = to_image(k, "k", 4, false),
                       V = to_image(v, "v", 4, false), M = to_image(mask, "mask", 4, true);
        const bool dbl = float_type({{&DQ, "dq"}, {&DK, "dk"}, {&DV, "dv"}, {&O, "o"},
                                     {&L, "lse"}, {&DO, "do"}, {&Q, "q"}, {&K, "k"}, {&V, "v"},
                                     {&M, "mask"}});
        py::gil_scoped_release nogil;
        attention_backward(dbl, DQ.a, DK.a, DV.a, O.a, L.a, DO.a, Q.a, K.a, V.a, M.a, scale,
                           causal);
      },
      py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("o"), py::arg("lse"), py::arg("do"),
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"), py::arg("scale"),
      py::arg("causal"),
      "dq, dk, dv of sum(o * do), the probabilities recomputed from lse.");
}
