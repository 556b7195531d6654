// Bindings of the GEMM family: gemm, linear, linear_backward. Signatures: outputs first, then
// inputs, then parameters (DESIGN.md). The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/gemm/gemm.h"
#include "cpu/linear.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
void gemm_t(py::array out, py::array a, py::array b, py::object c, double alpha, double beta) {
  Mat<T> o = mat<T>(out);
  Mat<const T> A = cmat<T>(a), B = cmat<T>(b), C = cmat_or_empty<T>(c);
  GilRelease nogil(double(o.rows) * double(o.cols) * double(A.cols));
  if (C.p && beta != 0.0) {
    for (index_t i = 0; i < o.rows; ++i)
      for (index_t j = 0; j < o.cols; ++j) o.p[i * o.rs + j * o.cs] = C.p[i * C.rs + j * C.cs];
  }
  GemmProblem<T> p;
  p.m = o.rows; p.n = o.cols; p.k = A.cols;
  p.alpha = T(alpha);
  p.beta = C.p ? T(beta) : T(0);
  p.a = A.p; p.rsa = A.rs; p.csa = A.cs;
  p.b = B.p; p.rsb = B.rs; p.csb = B.cs;
  p.c = o.p; p.rsc = o.rs; p.csc = o.cs;
  gemm(p);
}

template <class T>
void linear_t(py::array y, py::object z, py::array x, py::array w, py::object b, int act,
              double param) {
  Mat<T> Y = mat<T>(y), Z = mat_or_empty<T>(z);
  Mat<const T> X = cmat<T>(x), Wm = cmat<T>(w);
  const T* B = cptr_or_null<T>(b);
  GilRelease nogil(double(X.rows) * double(X.cols) * double(Wm.rows));
  linear_forward<T>(Y, Z, X, Wm, B, act, T(param));
}

template <class T>
void linear_backward_t(py::object dx, py::array dw, py::object db, py::array dy, py::array x,
                       py::array w, py::object y, py::object z, int act, double param) {
  Mat<T> DX = mat_or_empty<T>(dx), DW = mat<T>(dw);
  T* DB = ptr_or_null<T>(db);
  Mat<const T> DY = cmat<T>(dy), X = cmat<T>(x), Wm = cmat<T>(w);
  Mat<const T> Y = cmat_or_empty<T>(y), Z = cmat_or_empty<T>(z);
  GilRelease nogil(2.0 * double(X.rows) * double(X.cols) * double(Wm.rows));
  linear_backward<T>(DX, DW, DB, DY, X, Wm, Y, Z, act, T(param));
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](py::array out, py::array a, py::array b, py::object c, double alpha, double beta) {
        if (is_f32(out)) gemm_t<float>(out, a, b, c, alpha, beta);
        else gemm_t<double>(out, a, b, c, alpha, beta);
      },
      py::arg("out"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("alpha"),
      py::arg("beta"),
      "out := alpha * a @ b + beta * c (c may be None). Arguments are trusted: use fastnn.ops.gemm.");
  m.def(
      "linear",
      [](py::array y, py::object z, py::array x, py::array w, py::object b, int act,
         double param) {
        if (is_f32(y)) linear_t<float>(y, z, x, w, b, act, param);
        else linear_t<double>(y, z, x, w, b, act, param);
      },
      py::arg("y"), py::arg("z"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act"),
      py::arg("param"), "y := act(x @ w.T + b); z (or None) receives x @ w.T + b.");
  m.def(
      "linear_backward",
      [](py::object dx, py::array dw, py::object db, py::array dy, py::array x, py::array w,
         py::object y, py::object z, int act, double param) {
        if (is_f32(dw)) linear_backward_t<float>(dx, dw, db, dy, x, w, y, z, act, param);
        else linear_backward_t<double>(dx, dw, db, dy, x, w, y, z, act, param);
      },
      py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("w"),
      py::arg("y"), py::arg("z"), py::arg("act"), py::arg("param"),
      "Gradients of linear: dw, db (or None), dx (or None) from dy.");
}

}  // namespace fastnn
