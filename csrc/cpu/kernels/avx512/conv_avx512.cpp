// AVX-512 build of the convolution loops of csrc/cpu/conv2d.h: the Winograd transforms and the
// direct (depthwise) planes, compiled with AVX-512 flags only in this file and chosen at run
// time. 16 float lanes where the baseline build had 4, and the stride-2 tile columns gathered
// with two-source permutes instead of one load per element.
//
// Small float images (padded rows of at most 16 values: 14x14 and below with 3x3 "same") also
// get a whole-plane input transform that reads the image in place: each padded row is one
// masked load (zeros in the padding lanes), split once into its even and odd columns, and
// shared by the two rows of tiles that read it. The generic path copied a padded band first
// and split every row of tiles again; at 14x14 with 32 and 64 channels the copy and the
// transform had cost about an eighth of a CNN's training step.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

// GCC 12's masked intrinsics pass an intentionally undefined vector internally, which
// -Wmaybe-uninitialized reports as a false positive once inlined here (as in pool_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "common/activations.h"
#include "cpu/conv2d.h"

namespace fastnn {
namespace conv_avx512 {
namespace {

constexpr index_t kPlaneMaxTw = 7;  // 2*tw + 2 padded columns in 16 lanes

void input_plane_f32(float* v, index_t sv, const float* x, index_t h, index_t w, index_t ph,
                     index_t pw, index_t th, index_t tw) {
  // Lanes [lo, hi) of a padded row are input columns [lo - pw, hi - pw); the rest is padding.
  const index_t lo = std::min<index_t>(pw, 16), hi = std::min<index_t>(pw + w, 16);
  const __mmask16 cols =
      hi > lo ? __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u)) : __mmask16(0);
  // [even columns | odd columns] and the same shifted by one column pair (the columns 16 and
  // 17 past the row are zero; only junk tiles past tw would read them).
  const __m512i split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m512i split1 = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 0, 3, 5, 7, 9, 11, 13, 15, 0);
  const __mmask16 keep1 = 0x7f7f;
  auto row = [&](index_t r, __m512& a, __m512& b) {
    const index_t ih = r - ph;
    __m512 z = _mm512_setzero_ps();
    if (ih >= 0 && ih < h && cols) {
      // lane 0 is column -pw of the row (before it, or before x: masked off, never read)
      const float* p = reinterpret_cast<const float*>(
          reinterpret_cast<std::uintptr_t>(x + ih * w) - std::uintptr_t(pw * index_t(sizeof(float))));
      z = _mm512_maskz_loadu_ps(cols, p);
    }
    a = _mm512_permutexvar_ps(split, z);
    b = _mm512_maskz_permutexvar_ps(keep1, split1, z);
  };
  __m512 A[4], B[4];
  row(0, A[0], B[0]);
  row(1, A[1], B[1]);
  for (index_t a = 0; a < th; ++a) {
    row(2 * a + 2, A[2], B[2]);
    row(2 * a + 3, A[3], B[3]);
    // rows of B^T d: r0 - r2, r1 + r2, r2 - r1, r1 - r3 (columns split as above)
    const __m512 ta[4] = {_mm512_sub_ps(A[0], A[2]), _mm512_add_ps(A[1], A[2]),
                          _mm512_sub_ps(A[2], A[1]), _mm512_sub_ps(A[1], A[3])};
    const __m512 tb[4] = {_mm512_sub_ps(B[0], B[2]), _mm512_add_ps(B[1], B[2]),
                          _mm512_sub_ps(B[2], B[1]), _mm512_sub_ps(B[1], B[3])};
    float* out = v + a * tw;
    for (int k = 0; k < 4; ++k) {
      // tile t reads columns 2t .. 2t+3: ev[t], od[t], ev1[t], od1[t]
      const __m512 d = _mm512_sub_ps(ta[k], tb[k]);             // ev - ev1 | od - od1
      const __m512 sw = _mm512_shuffle_f32x4(ta[k], ta[k], 0x4e);  // od | ev
      const __m512 e = _mm512_add_ps(sw, tb[k]);                // od + ev1
      const __m512 f = _mm512_sub_ps(tb[k], sw);                // ev1 - od
      float* o = out + 4 * k * sv;
      _mm256_storeu_ps(o, _mm512_castps512_ps256(d));
      _mm256_storeu_ps(o + sv, _mm512_castps512_ps256(e));
      _mm256_storeu_ps(o + 2 * sv, _mm512_castps512_ps256(f));
      _mm256_storeu_ps(o + 3 * sv, _mm512_extractf32x8_ps(d, 1));
    }
    A[0] = A[2]; A[1] = A[3];
    B[0] = B[2]; B[1] = B[3];
  }
}

inline __mmask16 lanes(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// A row pair of tiles at a time: the even output columns from one tile row of o, the odd ones
// from the next, interleaved by one two-source permute; masked loads and stores, so nothing
// past the tiles or the plane is touched.
void place_plane_f32(float* y, const float* o, index_t so, index_t oh, index_t ow, index_t th,
                     index_t tw) {
  const __m512i mix = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __mmask16 in = lanes(tw), out = lanes(ow);
  for (index_t a = 0; a < th; ++a)
    for (index_t r = 0; r < 2 && 2 * a + r < oh; ++r) {
      const float* e = o + 2 * r * so + a * tw;
      const __m512 ev = _mm512_maskz_loadu_ps(in, e), od = _mm512_maskz_loadu_ps(in, e + so);
      _mm512_mask_storeu_ps(y + (2 * a + r) * ow, out, _mm512_permutex2var_ps(ev, mix, od));
    }
}

void gather_plane_f32(float* d, index_t sd, const float* dy, index_t oh, index_t ow, index_t th,
                      index_t tw) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
  const __mmask16 in = lanes(ow), out = lanes(tw);
  for (index_t a = 0; a < th; ++a)
    for (index_t r = 0; r < 2; ++r) {
      float* e = d + 2 * r * sd + a * tw;
      // a row past an odd bottom edge, and the column past an odd right edge, are zeros
      const __m512 z = 2 * a + r < oh ? _mm512_maskz_loadu_ps(in, dy + (2 * a + r) * ow)
                                      : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(e, out, _mm512_permutexvar_ps(even, z));
      _mm512_mask_storeu_ps(e + sd, out, _mm512_permutexvar_ps(odd, z));
    }
}

// NB output channels (NB <= 8) of a single-channel image, two vectors (32 columns) a row: for
// each output row, every tap's shifted input row is loaded once (masked: the padding lanes are
// zero) and multiplied into the NB accumulators with the tap's broadcast weight.
template <int NB>
void one_channel_block(float* y, const float* x, const float* w, const float* bias,
                       const ConvGeom& g, index_t co0, index_t nb) {
  const index_t P = g.oh * g.ow, kk = g.kh * g.kw;
  const __mmask16 out0 = lanes(g.ow), out1 = lanes(g.ow - 16);
  const bool relu = g.act == act::RELU;
  for (index_t r = 0; r < g.oh; ++r) {
    __m512 acc[NB][2];
    for (int b = 0; b < NB; ++b) {
      const float bv = b < nb && bias ? bias[co0 + b] : 0.0f;
      acc[b][0] = acc[b][1] = _mm512_set1_ps(bv);
    }
    for (index_t i = 0; i < g.kh; ++i) {
      const index_t ih = r - g.ph + i;
      if (ih < 0 || ih >= g.h) continue;
      const float* row = x + ih * g.w;
      for (index_t j = 0; j < g.kw; ++j) {
        // output column q reads input column q + off, inside for q in [lo, hi)
        const index_t off = j - g.pw;
        const index_t lo = std::max<index_t>(0, -off), hi = std::min(g.ow, g.w - off);
        const __mmask16 m0 = hi > lo ? __mmask16(lanes(hi) & ~lanes(lo)) : __mmask16(0);
        const __mmask16 m1 = hi > lo ? __mmask16(lanes(hi - 16) & ~lanes(lo - 16)) : __mmask16(0);
        // the vector's first lane is column off (possibly before the row: masked off, never read)
        const float* p = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(row) +
                                                        std::uintptr_t(off * index_t(sizeof(float))));
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, p), x1 = _mm512_maskz_loadu_ps(m1, p + 16);
        const float* wt = w + co0 * kk + i * g.kw + j;
        for (int b = 0; b < NB; ++b) {
          if (b >= nb) break;
          const __m512 wv = _mm512_set1_ps(wt[b * kk]);
          acc[b][0] = _mm512_fmadd_ps(wv, x0, acc[b][0]);
          acc[b][1] = _mm512_fmadd_ps(wv, x1, acc[b][1]);
        }
      }
    }
    for (int b = 0; b < NB; ++b) {
      if (b >= nb) break;
      __m512 v0 = acc[b][0], v1 = acc[b][1];
      if (relu) {  // as act::forward: NaN stays NaN
        const __m512 z = _mm512_setzero_ps();
        v0 = _mm512_mask_mov_ps(v0, _mm512_cmp_ps_mask(v0, z, _CMP_LE_OQ), z);
        v1 = _mm512_mask_mov_ps(v1, _mm512_cmp_ps_mask(v1, z, _CMP_LE_OQ), z);
      }
      float* yr = y + (co0 + b) * P + r * g.ow;
      _mm512_mask_storeu_ps(yr, out0, v0);
      _mm512_mask_storeu_ps(yr + 16, out1, v1);
    }
  }
}

void one_channel_f32(float* y, const float* x, const float* w, const float* bias,
                     const ConvGeom& g, index_t co0, index_t co1) {
  one_channel_block<8>(y, x, w, bias, g, co0, co1 - co0);
}

// The sum of a vector's lanes in double (a fixed tree).
inline double lane_sum(__m512 v) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

// 3x3 weight gradient of NB = 2 output channels of a single-channel input: per image, 9 taps x
// NB accumulators (and NB for the bias) of two-vector rows: each output-gradient row is loaded
// once per channel, each tap's shifted input row once for both channels.
constexpr index_t kDwBlock = 2;

void one_channel_dw_f32(float* dw, float* db, const float* dy, const float* x,
                        const ConvGeom& g, index_t co0, index_t co1) {
  constexpr int NB = int(kDwBlock);
  const index_t P = g.oh * g.ow, HW = g.h * g.w, nb = co1 - co0;
  const __mmask16 out0 = lanes(g.ow), out1 = lanes(g.ow - 16);
  __mmask16 m0[3], m1[3];
  for (index_t j = 0; j < 3; ++j) {
    const index_t off = j - g.pw;
    const index_t lo = std::max<index_t>(0, -off), hi = std::min(g.ow, g.w - off);
    m0[j] = hi > lo ? __mmask16(lanes(hi) & ~lanes(lo)) : __mmask16(0);
    m1[j] = hi > lo ? __mmask16(lanes(hi - 16) & ~lanes(lo - 16)) : __mmask16(0);
  }
  double sw[NB][9] = {}, sb[NB] = {};
  for (index_t n = 0; n < g.n; ++n) {
    const float* xn = x + n * HW;
    __m512 acc[NB][9], bacc[NB];
    for (int b = 0; b < NB; ++b) {
      bacc[b] = _mm512_setzero_ps();
      for (int t = 0; t < 9; ++t) acc[b][t] = _mm512_setzero_ps();
    }
    for (index_t r = 0; r < g.oh; ++r) {
      __m512 d0[NB], d1[NB];
      for (int b = 0; b < NB; ++b) {
        const float* dr = dy + ((n * g.co) + co0 + (b < nb ? b : 0)) * P + r * g.ow;
        d0[b] = b < nb ? _mm512_maskz_loadu_ps(out0, dr) : _mm512_setzero_ps();
        d1[b] = b < nb ? _mm512_maskz_loadu_ps(out1, dr + 16) : _mm512_setzero_ps();
        bacc[b] = _mm512_add_ps(bacc[b], _mm512_add_ps(d0[b], d1[b]));
      }
      for (int i = 0; i < 3; ++i) {
        const index_t ih = r - g.ph + i;
        if (ih < 0 || ih >= g.h) continue;
        const float* row = xn + ih * g.w;
        for (int j = 0; j < 3; ++j) {
          const index_t off = j - g.pw;
          const float* p = reinterpret_cast<const float*>(
              reinterpret_cast<std::uintptr_t>(row) + std::uintptr_t(off * index_t(sizeof(float))));
          const __m512 x0 = _mm512_maskz_loadu_ps(m0[j], p);
          const __m512 x1 = _mm512_maskz_loadu_ps(m1[j], p + 16);
          for (int b = 0; b < NB; ++b)
            acc[b][3 * i + j] =
                _mm512_fmadd_ps(d1[b], x1, _mm512_fmadd_ps(d0[b], x0, acc[b][3 * i + j]));
        }
      }
    }
    for (int b = 0; b < NB; ++b) {
      for (int t = 0; t < 9; ++t) sw[b][t] += lane_sum(acc[b][t]);
      sb[b] += lane_sum(bacc[b]);
    }
  }
  for (index_t b = 0; b < nb; ++b) {
    for (int t = 0; t < 9; ++t) dw[(co0 + b) * 9 + t] = float(sw[b][t]);
    if (db) db[co0 + b] = float(sb[b]);
  }
}

constexpr ConvLoops<float> loops_f32() {
  ConvLoops<float> l = conv_loops_of_this_file<float>();
  l.input_plane = &input_plane_f32;
  l.place_plane = &place_plane_f32;
  l.gather_plane = &gather_plane_f32;
  l.one_channel = &one_channel_f32;
  l.one_channel_max_ow = 32;
  l.one_channel_dw = &one_channel_dw_f32;
  l.one_channel_dw_block = kDwBlock;
  l.input_plane_max_tw = kPlaneMaxTw;
  return l;
}

}  // namespace
}  // namespace conv_avx512

const ConvIsaLoops kConvLoopsAvx512 = {"avx512", conv_avx512::loops_f32(),
                                     conv_loops_of_this_file<double>()};

}  // namespace fastnn
