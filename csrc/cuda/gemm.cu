// The `gemm` entry point of fastnn._cuda and launch_gemm, which every GEMM-shaped call goes
// through: it picks the operand layouts and the tile configuration, then hands over to run_tiles
// (gemm_tiles.cuh).
#include <cstdlib>

#include "cuda/check.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace {

// How one operand, seen as R x K with strides (rs_r, rs_k), is best fetched.
struct Layout {
  bool kmajor;  // runs along K (else along R)
  bool vec;     // those runs can be read as aligned 4-wide vectors
};

Layout choose_layout(const void* p, index_t R, index_t K, index_t& rs_r, index_t& rs_k,
                     std::size_t elem) {
  // The stride of a length-1 dimension is arbitrary (NumPy leaves odd values there); zero makes it
  // harmless for both the layout choice and the alignment test.
  if (R == 1) rs_r = 0;
  if (K == 1) rs_k = 0;
  Layout l;
  if (rs_k == 1) l.kmajor = true;
  else if (rs_r == 1) l.kmajor = false;
  else l.kmajor = R == 1 || (K != 1 && std::llabs(rs_k) <= std::llabs(rs_r));
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % (4 * elem) == 0;
  l.vec = aligned && (l.kmajor ? (rs_k == 1 && rs_r % 4 == 0) : (rs_r == 1 && rs_k % 4 == 0));
  return l;
}

int multiprocessors() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace

template <class T>
void launch_gemm(GemmParams<T> p) {
  if (p.m <= 0 || p.n <= 0) return;
  // The loaders see B as N x K: rows of that view are columns of B.
  index_t rsbt = p.csb, ksbt = p.rsb;
  const Layout la = choose_layout(p.a, p.m, p.k, p.rsa, p.csa, sizeof(T));
  const Layout lb = choose_layout(p.b, p.n, p.k, rsbt, ksbt, sizeof(T));
  p.csb = rsbt;
  p.rsb = ksbt;
  p.vec_a = la.vec;
  p.vec_b = lb.vec;
  // Large tiles (float32 only) when they fill every multiprocessor; else 4x as many small ones.
  if constexpr (sizeof(T) == 4) {
    const index_t large_tiles = ((p.m + LargeTile::BM - 1) / LargeTile::BM) *
                                ((p.n + LargeTile::BN - 1) / LargeTile::BN);
    if (large_tiles >= multiprocessors()) {
      run_tiles<T, LargeTile>(p, la.kmajor, lb.kmajor);
      return;
    }
  }
  run_tiles<T, SmallTile>(p, la.kmajor, lb.kmajor);
}

template void launch_gemm<float>(GemmParams<float>);
template void launch_gemm<double>(GemmParams<double>);

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
