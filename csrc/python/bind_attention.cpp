// Bindings of the attention family: attention_forward/backward, layer_norm_forward/backward,
// and _attention_exp (the active ISA's vector exp, for the tests).
// Signatures: outputs first, then saved state, then inputs, then parameters (DESIGN.md).
// q, k, v, o, do and the gradients are (B, H, N, features) with any non-negative strides over the
// first three axes and unit stride along the features (a head read out of a fused projection in
// place); lse is C-contiguous; the mask is None or an additive (B, H, Nq, Nk) view of the same
// dtype with any strides. fastnn.ops checked everything.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/attention.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
const T* cdata(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mdata(py::array& a) { return static_cast<T*>(a.mutable_data()); }

// The (B, H, N) element strides of a 4-D array whose last axis is unit-stride. A stride on an
// axis of length 1 is never used (the index is always 0) and reads as 0. The checks keep a
// direct caller of _C from getting silently wrong strides; ops/ never fails them.
template <class T>
AttnLayout layout_of(const py::array& a) {
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  if (a.ndim() != 4 || a.itemsize() != item)
    throw py::value_error("fastnn._C: attention arrays must be 4-D, of one dtype");
  if (a.shape(3) > 1 && a.strides(3) != item)
    throw py::value_error("fastnn._C: attention arrays must be unit-stride along the last axis");
  index_t s[3];
  for (int ax = 0; ax < 3; ++ax) {
    const py::ssize_t st = a.shape(ax) > 1 ? a.strides(ax) : 0;
    if (st < 0 || st % item != 0)
      throw py::value_error(
          "fastnn._C: attention strides must be non-negative whole multiples of the item size");
    s[ax] = static_cast<index_t>(st / item);
  }
  return AttnLayout{s[0], s[1], s[2]};
}

template <class T>
AttnProblem<T> problem(const py::array& q, const py::array& k, const py::array& v,
                       const py::object& mask, double scale, bool causal) {
  AttnProblem<T> p;
  p.b = q.shape(0); p.h = q.shape(1); p.nq = q.shape(2); p.d = q.shape(3);
  p.nk = k.shape(2); p.dv = v.shape(3);
  p.scale = static_cast<T>(scale);
  p.causal = causal;
  p.lq = layout_of<T>(q);
  p.lk = layout_of<T>(k);
  p.lv = layout_of<T>(v);
  if (!mask.is_none()) {
    const py::array m = mask.cast<py::array>();
    if (m.ndim() != 4 || m.itemsize() != q.itemsize())
      throw py::value_error("fastnn._C: mask must be a 4-D array of the inputs' dtype");
    p.mask = static_cast<const T*>(m.data());
    for (int a = 0; a < 4; ++a) {
      if (m.strides(a) % static_cast<py::ssize_t>(sizeof(T)) != 0)
        throw py::value_error("fastnn._C: mask strides must be whole multiples of the item size");
      p.ms[a] = m.strides(a) / static_cast<index_t>(sizeof(T));
    }
  }
  return p;
}

template <class T>
void grad_layouts(AttnProblem<T>& p, const py::array& o, const py::array& dout,
                  const py::array& dq, const py::array& dk, const py::array& dv) {
  p.lo = layout_of<T>(o);
  p.ldo = layout_of<T>(dout);
  p.ldq = layout_of<T>(dq);
  p.ldk = layout_of<T>(dk);
  p.ldv = layout_of<T>(dv);
}

double work(const py::array& q, const py::array& k, const py::array& v) {
  return double(q.shape(0) * q.shape(1)) * double(q.shape(2)) * double(k.shape(2)) *
         double(q.shape(3) + v.shape(3));
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](py::array o, py::array lse, py::array q, py::array k, py::array v, py::object mask,
         double scale, bool causal) {
        const bool f32 = is_f32(q);
        if (f32) {
          auto p = problem<float>(q, k, v, mask, scale, causal);
          p.lo = layout_of<float>(o);
          GilRelease nogil(work(q, k, v));
          attention_forward<float>(mdata<float>(o), mdata<float>(lse), cdata<float>(q),
                                   cdata<float>(k), cdata<float>(v), p);
        } else {
          auto p = problem<double>(q, k, v, mask, scale, causal);
          p.lo = layout_of<double>(o);
          GilRelease nogil(work(q, k, v));
          attention_forward<double>(mdata<double>(o), mdata<double>(lse), cdata<double>(q),
                                    cdata<double>(k), cdata<double>(v), p);
        }
      },
      py::arg("o"), py::arg("lse"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
      py::arg("scale"), py::arg("causal"),
      "o := softmax(q k^T * scale + mask) v, lse := the rows' log-sum-exp (-inf and a zero "
      "row where no key is visible). Arguments are trusted: use fastnn.ops.attention.");
  m.def(
      "attention_backward",
      [](py::array dq, py::array dk, py::array dv, py::array o, py::array lse, py::array dout,
         py::array q, py::array k, py::array v, py::object mask, double scale, bool causal) {
        const bool f32 = is_f32(q);
        if (f32) {
          auto p = problem<float>(q, k, v, mask, scale, causal);
          grad_layouts<float>(p, o, dout, dq, dk, dv);
          GilRelease nogil(2 * work(q, k, v));
          attention_backward<float>(mdata<float>(dq), mdata<float>(dk), mdata<float>(dv),
                                    cdata<float>(o), cdata<float>(lse), cdata<float>(dout),
                                    cdata<float>(q), cdata<float>(k), cdata<float>(v), p);
        } else {
          auto p = problem<double>(q, k, v, mask, scale, causal);
          grad_layouts<double>(p, o, dout, dq, dk, dv);
          GilRelease nogil(2 * work(q, k, v));
          attention_backward<double>(mdata<double>(dq), mdata<double>(dk), mdata<double>(dv),
                                     cdata<double>(o), cdata<double>(lse), cdata<double>(dout),
                                     cdata<double>(q), cdata<double>(k), cdata<double>(v), p);
        }
      },
      py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("o"), py::arg("lse"), py::arg("do"),
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"), py::arg("scale"),
      py::arg("causal"),
      "dq, dk, dv of sum(o * do), the probabilities recomputed from lse.");
  m.def(
      "layer_norm_forward",
      [](py::array y, py::array mean, py::array rstd, py::array x, py::array gamma,
         py::array beta, double eps) {
        const index_t rows = x.shape(0), d = x.shape(1);
        GilRelease nogil(4.0 * double(rows) * double(d));
        if (is_f32(x))
          layer_norm_forward<float>(mdata<float>(y), mdata<float>(mean), mdata<float>(rstd),
                                    cdata<float>(x), cdata<float>(gamma), cdata<float>(beta),
                                    rows, d, static_cast<float>(eps));
        else
          layer_norm_forward<double>(mdata<double>(y), mdata<double>(mean),
                                     mdata<double>(rstd), cdata<double>(x),
                                     cdata<double>(gamma), cdata<double>(beta), rows, d, eps);
      },
      py::arg("y"), py::arg("mean"), py::arg("rstd"), py::arg("x"), py::arg("gamma"),
      py::arg("beta"), py::arg("eps"),
      "Rows of x (R, D): y := (x - mean) * rstd * gamma + beta; mean and rstd (R,) kept.");
  m.def(
      "layer_norm_backward",
      [](py::array dx, py::array dgamma, py::array dbeta, py::array mean, py::array rstd,
         py::array dy, py::array x, py::array gamma) {
        const index_t rows = x.shape(0), d = x.shape(1);
        GilRelease nogil(8.0 * double(rows) * double(d));
        if (is_f32(x))
          layer_norm_backward<float>(mdata<float>(dx), mdata<float>(dgamma),
                                     mdata<float>(dbeta), cdata<float>(mean),
                                     cdata<float>(rstd), cdata<float>(dy), cdata<float>(x),
                                     cdata<float>(gamma), rows, d);
        else
          layer_norm_backward<double>(mdata<double>(dx), mdata<double>(dgamma),
                                      mdata<double>(dbeta), cdata<double>(mean),
                                      cdata<double>(rstd), cdata<double>(dy), cdata<double>(x),
                                      cdata<double>(gamma), rows, d);
      },
      py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::arg("mean"), py::arg("rstd"),
      py::arg("dy"), py::arg("x"), py::arg("gamma"),
      "dx of every row; dgamma, dbeta summed over the rows.");
  m.def(
      "_attention_exp",
      [](py::array y, py::array x) {
        if (is_f32(x)) attention_exp<float>(mdata<float>(y), cdata<float>(x), x.size());
        else attention_exp<double>(mdata<double>(y), cdata<double>(x), x.size());
      },
      py::arg("y"), py::arg("x"),
      "y := exp(x) by the active ISA's vector exp (contiguous arrays of one dtype; tests).");
}

}  // namespace fastnn
