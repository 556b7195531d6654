// Fused scaled dot-product attention (flash-style) and layer normalization on the CPU.
//
// q, k, v, o and their gradients are (B, H, N, features) with any element strides over the
// first three axes (AttnLayout) and unit stride along the features: heads read straight out of a
// fused (B, N, 3, H, d) projection, and outputs written straight into (B, N, H, d), with no
// split or join copies. lse is C-contiguous (B, H, Nq); the mask a strided view. fastnn.ops
// checked every size (d >= 1, dv >= 1, Nk >= 1, no empty batch).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// Element strides of a (B, H, N, features) array over its first three axes.
struct AttnLayout {
  index_t b = 0, h = 0, n = 0;
  // Where row `row` of head (bi, hi) starts.
  index_t at(index_t bi, index_t hi, index_t row) const { return bi * b + hi * h + row * n; }
};

// The C-contiguous layout of (B, H, N, f).
inline AttnLayout contiguous_layout(index_t heads, index_t n, index_t f) {
  return AttnLayout{heads * n * f, n * f, f};
}

template <class T>
struct AttnProblem {
  index_t b = 0, h = 0, nq = 0, nk = 0, d = 0, dv = 0;
  T scale = T(1);
  bool causal = false;  // query i sees key j when j <= i + nk - nq
  // Additive mask (B, H, Nq, Nk) with element strides (0 on broadcast axes), or null.
  const T* mask = nullptr;
  index_t ms[4] = {0, 0, 0, 0};
  // Layouts of q, k, v, o, and in the backward of do, dq, dk, dv.
  AttnLayout lq, lk, lv, lo, ldo, ldq, ldk, ldv;
};

// o (B, H, Nq, dv) := softmax(q k^T * scale + mask) v, lse (B, H, Nq) := the rows' log-sum-exp
// (-inf, and a zero row of o, where no key is visible).
template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, const AttnProblem<T>& p);

// dq, dk, dv of sum(o * do), the probabilities recomputed from lse (FlashAttention-2).
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* o, const T* lse, const T* dout,
                        const T* q, const T* k, const T* v, const AttnProblem<T>& p);

// Rows of x (rows, d): y := (x - mean) * rstd * gamma + beta, mean and rstd kept per row.
template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta,
                        index_t rows, index_t d, T eps);

// dx per row; dgamma, dbeta summed over rows (per-chunk partials added in chunk order).
template <class T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* mean, const T* rstd, const T* dy,
                         const T* x, const T* gamma, index_t rows, index_t d);

// y := exp(x), the vectorized exp of the active ISA (tests compare it with float64).
template <class T>
void attention_exp(T* y, const T* x, index_t n);

// ---- the per-ISA tile kernels (kernels/<isa>/attention_<isa>.cpp) ---------------------------

// Modes of tile_gemm: how C is combined with the product.
enum AttnGemmMode : int { kSet = 0, kAdd = 1, kScaleAdd = 2 };

template <class T>
struct AttnTileOps {
  int width;  // elements per vector: internal buffers pad rows to a multiple of it
  // C (rows x ncols, row stride ldc, padded to whole vectors) := mode(C) + A B, with
  // A[r][kk] = a[r*rsa + kk*csa] (read by broadcasts) and B[kk][c] = b[kk*ldb + c], c < ncols.
  // kScaleAdd multiplies row r of C by rowscale[r] first.
  void (*gemm)(T* c, index_t ldc, const T* a, index_t rsa, index_t csa, const T* b, index_t ldb,
               index_t rows, index_t ncols, index_t kdim, int mode, const T* rowscale);
  // One online-softmax step on a transposed tile of scaled, masked scores s (kc keys x lanes
  // queries, row stride lds, lanes a multiple of width): s := exp(s - m_new) with m_new the
  // running maximum per query (lane), l := l * alpha + sum, alpha := exp(m_old - m_new).
  void (*softmax_step)(T* s, index_t lds, index_t kc, index_t lanes, T* m, T* l, T* alpha);
  // s := exp(s - lse) (lse +inf for a fully masked query gives zeros).
  void (*probs)(T* s, index_t lds, index_t kc, index_t lanes, const T* lse);
  // dp := p * (dp - dsum) * scale, dsum per lane.
  void (*dscores)(T* dp, const T* p, index_t ld, index_t kc, index_t lanes, T scale,
                  const T* dsum);
  void (*exp)(T* y, const T* x, index_t n);
  void (*ln_row)(T* y, const T* x, const T* gamma, const T* beta, index_t d, T eps, T* mean,
                 T* rstd);
  // dx of one row; dg += dy * xhat, db += dy.
  void (*ln_row_backward)(T* dx, T* dg, T* db, const T* dy, const T* x, const T* gamma,
                          index_t d, T mean, T rstd);
};

struct AttnIsaKernels {
  const char* name;
  AttnTileOps<float> f32;
  AttnTileOps<double> f64;
};

extern const AttnIsaKernels kAttnGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const AttnIsaKernels kAttnAvx2;
extern const AttnIsaKernels kAttnAvx512;
#endif

}  // namespace fastnn
