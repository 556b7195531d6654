// Portable attention tile kernels: one scalar "vector" per element, a 4 x 4 register tile.
#include <cmath>
#include <limits>

#include "cpu/attention.h"

namespace fastnn {
namespace attn_generic {

template <class TT>
struct Scalar {
  using T = TT;
  using Reg = TT;
  static constexpr int W = 1, RM = 4, NV = 4;
  static Reg zero() { return T(0); }
  static Reg set1(T x) { return x; }
  static Reg load(const T* p) { return *p; }
  static Reg loadn(const T* p, int n) { return n > 0 ? *p : T(0); }
  static void store(T* p, Reg x) { *p = x; }
  static Reg bcast(const T* p) { return *p; }
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg sub(Reg a, Reg b) { return a - b; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg max(Reg a, Reg b) { return b > a ? b : a; }
  static T hsum(Reg a) { return a; }
  static Reg exp(Reg a) { return std::exp(a); }
};

#include "cpu/attention_tiles_impl.h"

}  // namespace attn_generic

const AttnIsaKernels kAttnGeneric = {"generic",
                                     attn_generic::make_attn_ops<attn_generic::Scalar<float>>(),
                                     attn_generic::make_attn_ops<attn_generic::Scalar<double>>()};

}  // namespace fastnn
