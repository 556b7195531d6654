// The `gemm` entry point of fastnn._cuda (the launcher lives in gemm_launch.cuh).
#include "cuda/launch.cuh"

namespace fastnn {
namespace cuda {
namespace {

template <class T>
void gemm_t(index_t m, index_t n, index_t k, MatArg out, MatArg a, MatArg b, MatArg c,
            double alpha, double beta) {
  GemmParams<T> p;
  p.m = m; p.n = n; p.k = k;
  p.a = reinterpret_cast<const T*>(a.ptr); p.rsa = a.rs; p.csa = a.cs;
  p.b = reinterpret_cast<const T*>(b.ptr); p.rsb = b.rs; p.csb = b.cs;
  p.out = reinterpret_cast<T*>(out.ptr); p.rso = out.rs; p.cso = out.cs;
  p.alpha = T(alpha);
  if (c.ptr && beta != 0.0) {  // BLAS semantics: with beta == 0, c is never read
    p.c = reinterpret_cast<const T*>(c.ptr); p.rsc = c.rs; p.csc = c.cs;
    p.beta = T(beta);
  }
  launch_gemm(p);
}

}  // namespace

void gemm(bool dbl, index_t m, index_t n, index_t k, MatArg out, MatArg a, MatArg b, MatArg c,
          double alpha, double beta) {
  if (dbl) gemm_t<double>(m, n, k, out, a, b, c, alpha, beta);
  else gemm_t<float>(m, n, k, out, a, b, c, alpha, beta);
}

}  // namespace cuda
}  // namespace fastnn
