// Portable GEMM kernels: plain C++ "vectors" of fixed width that the compiler maps onto whatever
// SIMD the baseline target has (SSE2 on x86-64, NEON on arm64). Tile 4 x 16 (fp32) / 4 x 8 (fp64)
// = 4 x 2 vectors of 8 (or 4) lanes, small enough to stay in 16 baseline registers.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/activations.h"
#include "common/rbm_math.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "cpu/act_rows.h"
#include "cpu/gemm/dispatch.h"

namespace fastnn {
namespace generic {

template <class TT, int WW>
struct VecG {
  using T = TT;
  static constexpr int W = WW;
  struct V {
    T x[W];
  };
  static inline V zero() {
    V r;
    for (int l = 0; l < W; ++l) r.x[l] = T(0);
    return r;
  }
  static inline V set1(T s) {
    V r;
    for (int l = 0; l < W; ++l) r.x[l] = s;
    return r;
  }
  static inline V load(const T* p) {
    V r;
    std::memcpy(r.x, p, sizeof(r.x));
    return r;
  }
  static inline V loadu(const T* p) { return load(p); }
  static inline V loadn(const T* p, int n) {
    if (n >= W) return load(p);
    V r = zero();
    for (int l = 0; l < n; ++l) r.x[l] = p[l];
    return r;
  }
  static inline void store(T* p, V v) { std::memcpy(p, v.x, sizeof(v.x)); }
  static inline void storen(T* p, V v, int n) {
    if (n >= W) return store(p, v);
    for (int l = 0; l < n; ++l) p[l] = v.x[l];
  }
  static inline V fma(V a, V b, V c) {
    for (int l = 0; l < W; ++l) c.x[l] += a.x[l] * b.x[l];
    return c;
  }
  static inline V mul(V a, V b) {
    for (int l = 0; l < W; ++l) a.x[l] *= b.x[l];
    return a;
  }
  static inline V add(V a, V b) {
    for (int l = 0; l < W; ++l) a.x[l] += b.x[l];
    return a;
  }
  // Same operand rule as the x86 max instruction: if either is NaN, the second one is returned.
  static inline V max(V a, V b) {
    for (int l = 0; l < W; ++l) a.x[l] = a.x[l] > b.x[l] ? a.x[l] : b.x[l];
    return a;
  }
  static constexpr bool kTranspose = false;
  static void transpose(const T*, index_t, int, int, T*, index_t, int) {}
};

using VecF = VecG<float, 8>;
using VecD = VecG<double, 4>;

#include "cpu/gemm/driver_impl.h"

using FrameF = Frame<VecF, 4, 2, 256, 64, 2048>;
using FrameD = Frame<VecD, 4, 2, 256, 32, 1024>;

}  // namespace generic

const IsaKernels kGenericKernels = {
    "generic",
    {generic::FrameF::blocking(), &generic::FrameF::run, &generic::FrameF::packed_a_elems,
     &generic::FrameF::pack_a_all, &generic::FrameF::pack_b_all, &generic::FrameF::packed},
    {generic::FrameD::blocking(), &generic::FrameD::run, &generic::FrameD::packed_a_elems,
     &generic::FrameD::pack_a_all, &generic::FrameD::pack_b_all, &generic::FrameD::packed},
};

}  // namespace fastnn
