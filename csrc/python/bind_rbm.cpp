// Bindings of the RBM kernels (cpu/rbm.h). ops/rbm.py validated every argument: C-contiguous
// arrays of one float dtype, matching sizes, counters below 2^32.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/rbm.h"
#include "cpu/rbm_fused.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
T* data(const py::array& a) {
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
void hidden_t(py::array h, py::array v, py::array w, py::object b, bool sample,
              std::uint64_t seed) {
  const index_t batch = v.shape(0), nv = w.shape(1), nh = w.shape(0);
  T* H = data<T>(h);
  const T *V = data<T>(v), *W = data<T>(w), *Bh = cptr_or_null<T>(b);
  GilRelease nogil(double(batch) * double(nv) * double(nh));
  rbm_hidden<T>(H, V, W, Bh, batch, nv, nh, sample, seed);
}

template <class T>
void visible_t(py::array v, py::array h, py::array w, py::object b, bool gaussian, bool sample,
               std::uint64_t seed) {
  const index_t batch = h.shape(0), nv = w.shape(1), nh = w.shape(0);
  T* Vo = data<T>(v);
  const T *Hh = data<T>(h), *W = data<T>(w), *Bv = cptr_or_null<T>(b);
  GilRelease nogil(double(batch) * double(nv) * double(nh));
  rbm_visible<T>(Vo, Hh, W, Bv, batch, nv, nh, gaussian, sample, seed);
}

template <class T>
double cd_t(py::array w, py::array b_vis, py::array b_hid, py::object chain, py::object vw,
            py::object vbv, py::object vbh, py::array v0, int k, double lr, double momentum,
            double weight_decay, bool gaussian, bool compute_error, std::uint64_t seed,
            py::object rows) {
  RbmStep s;
  s.batch = rows.is_none() ? v0.shape(0) : rows.cast<py::array>().shape(0);
  if (!rows.is_none()) s.rows = data<std::int64_t>(rows.cast<py::array>());
  s.nv = w.shape(1);
  s.nh = w.shape(0);
  s.particles = chain.is_none() ? 0 : chain.cast<py::array>().shape(0);
  s.k = k;
  s.lr = lr;
  s.momentum = momentum;
  s.weight_decay = weight_decay;
  s.gaussian = gaussian;
  s.compute_error = compute_error;
  s.seed = seed;
  T *W = data<T>(w), *Bv = data<T>(b_vis), *Bh = data<T>(b_hid);
  T *C = ptr_or_null<T>(chain), *VW = ptr_or_null<T>(vw), *VBv = ptr_or_null<T>(vbv),
    *VBh = ptr_or_null<T>(vbh);
  const T* V0 = data<T>(v0);
  py::gil_scoped_release nogil;
  return rbm_cd_step<T>(W, Bv, Bh, C, VW, VBv, VBh, V0, s);
}

template <class T>
void fe_t(py::array out, py::array v, py::array w, py::array b_vis, py::array b_hid,
          bool gaussian) {
  double* O = data<double>(out);
  const T *V = data<T>(v), *W = data<T>(w), *Bv = data<T>(b_vis), *Bh = data<T>(b_hid);
  const index_t batch = v.shape(0), nv = w.shape(1), nh = w.shape(0);
  py::gil_scoped_release nogil;
  rbm_free_energy<T>(O, V, W, Bv, Bh, batch, nv, nh, gaussian);
}

template <class T>
void pl_t(py::array out, py::array v, py::array w, py::array b_vis, py::array b_hid,
          std::uint64_t seed) {
  double* O = data<double>(out);
  const T *V = data<T>(v), *W = data<T>(w), *Bv = data<T>(b_vis), *Bh = data<T>(b_hid);
  const index_t batch = v.shape(0), nv = w.shape(1), nh = w.shape(0);
  py::gil_scoped_release nogil;
  rbm_pseudo_likelihood<T>(O, V, W, Bv, Bh, batch, nv, nh, seed);
}

}  // namespace

void bind_rbm(py::module_& m) {
  m.def(
      "rbm_hidden",
      [](py::array h, py::array v, py::array w, py::object b_hid, bool sample,
         std::uint64_t seed) {
        if (is_f32(w)) hidden_t<float>(h, v, w, b_hid, sample, seed);
        else hidden_t<double>(h, v, w, b_hid, sample, seed);
      },
      py::arg("h"), py::arg("v"), py::arg("w"), py::arg("b_hid"), py::arg("sample"),
      py::arg("seed"), "h := sigmoid(v @ w.T + b_hid), Bernoulli-sampled when sample.");
  m.def(
      "rbm_visible",
      [](py::array v, py::array h, py::array w, py::object b_vis, bool gaussian, bool sample,
         std::uint64_t seed) {
        if (is_f32(w)) visible_t<float>(v, h, w, b_vis, gaussian, sample, seed);
        else visible_t<double>(v, h, w, b_vis, gaussian, sample, seed);
      },
      py::arg("v"), py::arg("h"), py::arg("w"), py::arg("b_vis"), py::arg("gaussian"),
      py::arg("sample"), py::arg("seed"),
      "v := sigmoid(h @ w + b_vis) (or h @ w + b_vis, Gaussian units), sampled when sample.");
  m.def(
      "rbm_cd_step",
      [](py::array w, py::array b_vis, py::array b_hid, py::object chain, py::object vel_w,
         py::object vel_b_vis, py::object vel_b_hid, py::array v0, int k, double lr,
         double momentum, double weight_decay, bool gaussian, bool compute_error,
         std::uint64_t seed, py::object rows) {
        if (is_f32(w))
          return cd_t<float>(w, b_vis, b_hid, chain, vel_w, vel_b_vis, vel_b_hid, v0, k, lr,
                             momentum, weight_decay, gaussian, compute_error, seed, rows);
        return cd_t<double>(w, b_vis, b_hid, chain, vel_w, vel_b_vis, vel_b_hid, v0, k, lr,
                            momentum, weight_decay, gaussian, compute_error, seed, rows);
      },
      py::arg("w"), py::arg("b_vis"), py::arg("b_hid"), py::arg("chain"), py::arg("vel_w"),
      py::arg("vel_b_vis"), py::arg("vel_b_hid"), py::arg("v0"), py::arg("k"), py::arg("lr"),
      py::arg("momentum"), py::arg("weight_decay"), py::arg("gaussian"),
      py::arg("compute_error"), py::arg("seed"), py::arg("rows") = py::none(),
      "One CD-k / PCD update in place; returns the reconstruction error (NaN if not computed). "
      "rows (int64, optional): the batch is v0[rows].");
  m.def(
      "rbm_free_energy",
      [](py::array out, py::array v, py::array w, py::array b_vis, py::array b_hid,
         bool gaussian) {
        if (is_f32(w)) fe_t<float>(out, v, w, b_vis, b_hid, gaussian);
        else fe_t<double>(out, v, w, b_vis, b_hid, gaussian);
      },
      py::arg("out"), py::arg("v"), py::arg("w"), py::arg("b_vis"), py::arg("b_hid"),
      py::arg("gaussian"), "out := free energy of each row of v (float64).");
  m.def(
      "rbm_pseudo_likelihood",
      [](py::array out, py::array v, py::array w, py::array b_vis, py::array b_hid,
         std::uint64_t seed) {
        if (is_f32(w)) pl_t<float>(out, v, w, b_vis, b_hid, seed);
        else pl_t<double>(out, v, w, b_vis, b_hid, seed);
      },
      py::arg("out"), py::arg("v"), py::arg("w"), py::arg("b_vis"), py::arg("b_hid"),
      py::arg("seed"), "out := per-row pseudo-likelihood (float64), as scikit-learn's.");
  // Tests: off, rbm_cd_step takes its general path instead of the fused PCD-1 step.
  m.def("_set_rbm_fused", &testing::set_rbm_fused, py::arg("on"));
}

}  // namespace fastnn
