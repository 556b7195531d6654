#include "cpu/linear.h"

#include "common/activations.h"
#include "common/workspace.h"
#include "cpu/elementwise.h"

namespace fastnn {

template <class T>
void linear_forward(Mat<T> y, Mat<T> z, Mat<const T> x, Mat<const T> w, const T* b, int act_kind,
                    T act_param) {
  GemmProblem<T> p;
  p.m = x.rows; p.n = w.rows; p.k = x.cols;
  p.a = x.p; p.rsa = x.rs; p.csa = x.cs;
  p.b = w.p; p.rsb = w.cs; p.csb = w.rs;  // B = w^T
  p.ep.bias = b;
  p.ep.bias_axis = 1;
  if (z.p) {
    // Keep the pre-activation, then apply the activation from it (one extra pass, GELU only).
    p.c = z.p; p.rsc = z.rs; p.csc = z.cs;
    gemm(p);
    // One call over the whole matrix when rows are packed: a call per row paid the
    // floating-point mode switch of act_forward 1024 times for a (1024, 128) layer.
    if (y.cs == 1 && z.cs == 1 && y.rs == y.cols && z.rs == z.cols) {
      act_forward<T>(y.p, z.p, y.rows * y.cols, act_kind, act_param);
      return;
    }
    for (index_t i = 0; i < y.rows; ++i)
      act_forward<T>(y.p + i * y.rs, z.p + i * z.rs, y.cols, act_kind, act_param);
    return;
  }
  p.c = y.p; p.rsc = y.rs; p.csc = y.cs;
  p.ep.act = act_kind;
  p.ep.act_param = act_param;
  gemm(p);
}

template <class T>
void linear_backward(Mat<T> dx, Mat<T> dw, T* db, Mat<const T> dy, Mat<const T> x,
                     Mat<const T> w, Mat<const T> y, Mat<const T> z, int act_kind, T act_param) {
  const index_t M = dy.rows, N = dy.cols;
  const T* dz = dy.p;
  index_t ldz = dy.rs;
  if (act_kind != act::NONE) {
    T* buf = static_cast<T*>(scratch(kScratchLinear, std::size_t(M * N) * sizeof(T)));
    const bool packed = dy.cs == 1 && y.cs == 1 && dy.rs == N && y.rs == N &&
                        (!z.p || (z.cs == 1 && z.rs == N));
    if (packed) {
      act_backward<T>(buf, dy.p, z.p, y.p, M * N, act_kind, act_param);
    } else {
      for (index_t i = 0; i < M; ++i) {
        act_backward<T>(buf + i * N, dy.p + i * dy.rs, z.p ? z.p + i * z.rs : nullptr,
                        y.p + i * y.rs, N, act_kind, act_param);
      }
    }
    dz = buf;
    ldz = N;
  }
  if (db) column_sums<T>(db, dz, M, N, ldz);

  GemmProblem<T> g;  // dw = dz^T @ x
  g.m = N; g.n = x.cols; g.k = M;
  g.a = dz; g.rsa = 1; g.csa = ldz;
  g.b = x.p; g.rsb = x.rs; g.csb = x.cs;
  g.c = dw.p; g.rsc = dw.rs; g.csc = dw.cs;
  gemm(g);

  if (dx.p) {  // dx = dz @ w
    GemmProblem<T> h;
    h.m = M; h.n = w.cols; h.k = N;
    h.a = dz; h.rsa = ldz; h.csa = 1;
    h.b = w.p; h.rsb = w.rs; h.csb = w.cs;
    h.c = dx.p; h.rsc = dx.rs; h.csc = dx.cs;
    gemm(h);
  }
}

template void linear_forward<float>(Mat<float>, Mat<float>, Mat<const float>, Mat<const float>,
                                    const float*, int, float);
template void linear_forward<double>(Mat<double>, Mat<double>, Mat<const double>,
                                     Mat<const double>, const double*, int, double);
template void linear_backward<float>(Mat<float>, Mat<float>, float*, Mat<const float>,
                                     Mat<const float>, Mat<const float>, Mat<const float>,
                                     Mat<const float>, int, float);
template void linear_backward<double>(Mat<double>, Mat<double>, double*, Mat<const double>,
                                      Mat<const double>, Mat<const double>, Mat<const double>,
                                      Mat<const double>, int, double);

}  // namespace fastnn
