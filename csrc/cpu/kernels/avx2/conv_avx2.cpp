// AVX2 build of the convolution loops of csrc/cpu/conv2d.h: the Winograd transforms and the
// direct (depthwise) planes, compiled with -mavx2 -mfma only in this file and chosen at run time.
// 8 float lanes where the baseline build had 4, and the stride-2 tile columns gathered with
// shuffles instead of one load per element.
//
// The float loops that conv_avx512.cpp has beyond the plain ones, in 8 lanes: the whole-plane
// Winograd input transform, placement and gather of small images (padded rows of at most 16
// values: two vectors), and the single-input-channel forward and 3x3 weight gradient of a first
// layer. AVX2 has no masked arithmetic and its masked loads are slower than plain ones, so the
// single-channel loops first copy the image into a zero-padded plane (a few hundred values
// against 9 multiply-adds per output and channel) and then read it with plain loads.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/activations.h"
#include "cpu/conv2d.h"

namespace fastnn {
namespace conv_avx2 {
namespace {

constexpr index_t kPlaneMaxTw = 7;  // 2*tw + 2 padded columns in two vectors

// Lane masks: the 8 ints starting at kMask + 8 - n are n all-ones, then zeros.
alignas(32) const int kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i lanes(index_t n) {
  n = n < 0 ? 0 : (n > 8 ? 8 : n);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n));
}

// Lanes l of the vector whose first lane is column c0 with lo <= c0 + l < hi.
inline __m256i lanes_between(index_t c0, index_t lo, index_t hi) {
  const __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                       _mm256_set1_epi32(int(c0)));
  const __m256i ge_lo = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(int(lo) - 1));
  const __m256i lt_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(hi)), idx);
  return _mm256_and_si256(ge_lo, lt_hi);
}

// Even and odd columns of the 16 floats lo:hi, in order.
inline void split(__m256 lo, __m256 hi, __m256& even, __m256& odd) {
  even = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

inline const float* shifted(const float* p, index_t off) {  // p + off, possibly before an array
  return reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(p) +
                                        std::uintptr_t(off * index_t(sizeof(float))));
}

void input_plane_f32(float* v, index_t sv, const float* x, index_t h, index_t w, index_t ph,
                     index_t pw, index_t th, index_t tw) {
  // Padded column c is input column c - pw: lanes of [pw, pw + w) load, the rest is zero.
  const __m256i m0 = lanes_between(0, pw, pw + w), m1 = lanes_between(8, pw, pw + w);
  // Lane l of a shifted vector is lane l + 1 of the original (the last lane, a junk tile's, is
  // whatever: tiles past tw land in the next row's slots or V's spare values).
  const __m256i next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
  auto row = [&](index_t r, __m256& e, __m256& o) {
    const index_t ih = r - ph;
    if (ih < 0 || ih >= h) {
      e = o = _mm256_setzero_ps();
      return;
    }
    const float* p = shifted(x + ih * w, -pw);  // lane 0 is column -pw (masked off if outside)
    split(_mm256_maskload_ps(p, m0), _mm256_maskload_ps(p + 8, m1), e, o);
  };
  __m256 E[4], O[4];
  row(0, E[0], O[0]);
  row(1, E[1], O[1]);
  for (index_t a = 0; a < th; ++a) {
    row(2 * a + 2, E[2], O[2]);
    row(2 * a + 3, E[3], O[3]);
    // rows of B^T d: r0 - r2, r1 + r2, r2 - r1, r1 - r3, on the even and the odd columns
    const __m256 te[4] = {_mm256_sub_ps(E[0], E[2]), _mm256_add_ps(E[1], E[2]),
                          _mm256_sub_ps(E[2], E[1]), _mm256_sub_ps(E[1], E[3])};
    const __m256 to[4] = {_mm256_sub_ps(O[0], O[2]), _mm256_add_ps(O[1], O[2]),
                          _mm256_sub_ps(O[2], O[1]), _mm256_sub_ps(O[1], O[3])};
    float* out = v + a * tw;
    for (int k = 0; k < 4; ++k) {
      // tile t reads columns 2t .. 2t+3: ev[t], od[t], ev[t+1], od[t+1]
      const __m256 e1 = _mm256_permutevar8x32_ps(te[k], next);
      const __m256 o1 = _mm256_permutevar8x32_ps(to[k], next);
      float* o = out + 4 * k * sv;
      _mm256_storeu_ps(o, _mm256_sub_ps(te[k], e1));
      _mm256_storeu_ps(o + sv, _mm256_add_ps(to[k], e1));
      _mm256_storeu_ps(o + 2 * sv, _mm256_sub_ps(e1, to[k]));
      _mm256_storeu_ps(o + 3 * sv, _mm256_sub_ps(to[k], o1));
    }
    E[0] = E[2]; E[1] = E[3];
    O[0] = O[2]; O[1] = O[3];
  }
}

// A row of outputs at a time: its even columns from one tile row of o, its odd ones from the
// next, interleaved by unpacks and a 128-bit lane swap; masked loads and stores, so nothing past
// the tiles or the plane is touched.
void place_plane_f32(float* y, const float* o, index_t so, index_t oh, index_t ow, index_t th,
                     index_t tw) {
  const __m256i in = lanes(tw), out0 = lanes(ow), out1 = lanes(ow - 8);
  for (index_t a = 0; a < th; ++a)
    for (index_t r = 0; r < 2 && 2 * a + r < oh; ++r) {
      const float* e = o + 2 * r * so + a * tw;
      const __m256 ev = _mm256_maskload_ps(e, in), od = _mm256_maskload_ps(e + so, in);
      const __m256 lo = _mm256_unpacklo_ps(ev, od), hi = _mm256_unpackhi_ps(ev, od);
      float* yr = y + (2 * a + r) * ow;
      _mm256_maskstore_ps(yr, out0, _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_maskstore_ps(yr + 8, out1, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
}

void gather_plane_f32(float* d, index_t sd, const float* dy, index_t oh, index_t ow, index_t th,
                      index_t tw) {
  const __m256i in0 = lanes(ow), in1 = lanes(ow - 8), out = lanes(tw);
  for (index_t a = 0; a < th; ++a)
    for (index_t r = 0; r < 2; ++r) {
      float* e = d + 2 * r * sd + a * tw;
      // a row past an odd bottom edge, and the column past an odd right edge, are zeros
      __m256 ev = _mm256_setzero_ps(), od = _mm256_setzero_ps();
      if (2 * a + r < oh) {
        const float* s = dy + (2 * a + r) * ow;
        split(_mm256_maskload_ps(s, in0), _mm256_maskload_ps(s + 8, in1), ev, od);
      }
      _mm256_maskstore_ps(e, out, ev);
      _mm256_maskstore_ps(e + sd, out, od);
    }
}

// ---- a single input channel (a first layer) ----------------------------------------------------

// The image x (h x w) zero-padded for a stride-1, dilation-1 layer: row R is input row R - ph,
// column C input column C - pw, rows [0, oh + kh - 1) and columns [0, wb), in this thread's
// buffer (grow-only).
const float* padded_plane(const float* x, const ConvGeom& g, index_t wb) {
  thread_local std::vector<float> buf;
  const index_t rows = g.oh + g.kh - 1;
  if (buf.size() < std::size_t(rows * wb)) buf.resize(std::size_t(rows * wb));
  float* xp = buf.data();
  const index_t c0 = std::min(std::max<index_t>(g.pw, 0), wb);
  const index_t c1 = std::min(std::max(g.pw + g.w, c0), wb);
  for (index_t r = 0; r < rows; ++r) {
    float* d = xp + r * wb;
    const index_t ih = r - g.ph;
    if (ih < 0 || ih >= g.h) {
      std::memset(d, 0, std::size_t(wb) * sizeof(float));
      continue;
    }
    std::memset(d, 0, std::size_t(c0) * sizeof(float));
    std::memcpy(d + c0, x + ih * g.w + (c0 - g.pw), std::size_t(c1 - c0) * sizeof(float));
    std::memset(d + c1, 0, std::size_t(wb - c1) * sizeof(float));
  }
  return xp;
}

inline index_t round_up(index_t a, index_t b) { return (a + b - 1) / b * b; }

// NB output channels of the padded image, 16 columns (two vectors) at a time: every tap's
// shifted input row segment is loaded once and multiplied into the 2*NB accumulators with the
// tap's broadcast weight (8 of the 16 registers; 6 channels' 12 left too few for the operands).
constexpr index_t kFwdBlock = 4;

template <int NB>
void one_channel_block(float* y, const float* xp, index_t wb, const float* w, const float* bias,
                       const ConvGeom& g, index_t co0, index_t nb) {
  const index_t P = g.oh * g.ow, kk = g.kh * g.kw;
  const bool relu = g.act == act::RELU;
  const __m256 zero = _mm256_setzero_ps();
  for (index_t r = 0; r < g.oh; ++r) {
    for (index_t q = 0; q < g.ow; q += 16) {
      __m256 acc[NB][2];
      for (int b = 0; b < NB; ++b) {
        const float bv = b < nb && bias ? bias[co0 + b] : 0.0f;
        acc[b][0] = acc[b][1] = _mm256_set1_ps(bv);
      }
      for (index_t i = 0; i < g.kh; ++i) {
        const float* row = xp + (r + i) * wb + q;
        for (index_t j = 0; j < g.kw; ++j) {
          const __m256 x0 = _mm256_loadu_ps(row + j), x1 = _mm256_loadu_ps(row + j + 8);
          const float* wt = w + co0 * kk + i * g.kw + j;
          for (int b = 0; b < NB; ++b) {
            if (b >= nb) break;
            const __m256 wv = _mm256_broadcast_ss(wt + b * kk);
            acc[b][0] = _mm256_fmadd_ps(wv, x0, acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(wv, x1, acc[b][1]);
          }
        }
      }
      const index_t n = g.ow - q;
      for (int b = 0; b < NB; ++b) {
        if (b >= nb) break;
        __m256 v0 = acc[b][0], v1 = acc[b][1];
        if (relu) {  // as act::forward: NaN stays NaN
          v0 = _mm256_blendv_ps(v0, zero, _mm256_cmp_ps(v0, zero, _CMP_LE_OQ));
          v1 = _mm256_blendv_ps(v1, zero, _mm256_cmp_ps(v1, zero, _CMP_LE_OQ));
        }
        float* yr = y + (co0 + b) * P + r * g.ow + q;
        if (n >= 16) {
          _mm256_storeu_ps(yr, v0);
          _mm256_storeu_ps(yr + 8, v1);
        } else {
          _mm256_maskstore_ps(yr, lanes(n), v0);
          _mm256_maskstore_ps(yr + 8, lanes(n - 8), v1);
        }
      }
    }
  }
}

void one_channel_f32(float* y, const float* x, const float* w, const float* bias,
                     const ConvGeom& g, index_t co0, index_t co1) {
  const index_t wb = round_up(g.ow, 16) + g.kw - 1;
  const float* xp = padded_plane(x, g, wb);
  for (index_t c = co0; c < co1; c += kFwdBlock)
    one_channel_block<int(kFwdBlock)>(y, xp, wb, w, bias, g, c, std::min<index_t>(kFwdBlock, co1 - c));
}

// The sum of a vector's lanes in double (a fixed tree).
inline double lane_sum(__m256 v) {
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  const __m256d s = _mm256_add_pd(lo, hi);
  const __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

// 3x3 weight gradient of NB = 3 output channels of a single-channel input. Per image and tap
// row i, 3 taps x NB accumulators (9 registers) over every output row r and 8-column segment:
// NB output-gradient segments and the three shifted input segments of row r + i are loaded once
// each for 9 multiply-adds. The last segment's lanes past ow are zero in both operands (dy by a
// masked load, x by a mask: a NaN or inf there must not meet a zero). Per image in float lanes,
// then in double, image by image.
constexpr index_t kDwBlock = 3;

void one_channel_dw_f32(float* dw, float* db, const float* dy, const float* x,
                        const ConvGeom& g, index_t co0, index_t co1) {
  constexpr int NB = int(kDwBlock);
  const index_t P = g.oh * g.ow, HW = g.h * g.w, nb = co1 - co0;
  const index_t wb = round_up(g.ow, 8) + 2;
  const index_t full = g.ow / 8 * 8;  // columns in whole segments
  const __m256i tail = lanes(g.ow - full);
  const __m256 tail_f = _mm256_castsi256_ps(tail);
  double sw[NB][9] = {}, sb[NB] = {};
  for (index_t n = 0; n < g.n; ++n) {
    const float* xp = padded_plane(x + n * HW, g, wb);
    const float* dyn[NB];
    for (int b = 0; b < NB; ++b) dyn[b] = dy + (n * g.co + co0 + (b < nb ? b : 0)) * P;
    for (int i = 0; i < 3; ++i) {
      __m256 acc[NB][3];
      for (int b = 0; b < NB; ++b) acc[b][0] = acc[b][1] = acc[b][2] = _mm256_setzero_ps();
      for (index_t r = 0; r < g.oh; ++r) {
        const float* row = xp + (r + i) * wb;
        index_t q = 0;
        for (; q < full; q += 8) {
          __m256 d[NB];
          for (int b = 0; b < NB; ++b)
            d[b] = b < nb ? _mm256_loadu_ps(dyn[b] + r * g.ow + q) : _mm256_setzero_ps();
          for (int j = 0; j < 3; ++j) {
            const __m256 xv = _mm256_loadu_ps(row + q + j);
            for (int b = 0; b < NB; ++b) acc[b][j] = _mm256_fmadd_ps(d[b], xv, acc[b][j]);
          }
        }
        if (q < g.ow) {
          __m256 d[NB];
          for (int b = 0; b < NB; ++b)
            d[b] = b < nb ? _mm256_maskload_ps(dyn[b] + r * g.ow + q, tail) : _mm256_setzero_ps();
          for (int j = 0; j < 3; ++j) {
            const __m256 xv = _mm256_and_ps(_mm256_loadu_ps(row + q + j), tail_f);
            for (int b = 0; b < NB; ++b) acc[b][j] = _mm256_fmadd_ps(d[b], xv, acc[b][j]);
          }
        }
      }
      for (int b = 0; b < NB; ++b)
        for (int j = 0; j < 3; ++j) sw[b][3 * i + j] += lane_sum(acc[b][j]);
    }
    if (db) {
      for (index_t b = 0; b < nb; ++b) {
        __m256 s = _mm256_setzero_ps();
        const float* p = dyn[b];
        index_t k = 0;
        for (; k + 8 <= P; k += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(p + k));
        s = _mm256_add_ps(s, _mm256_maskload_ps(p + k, lanes(P - k)));
        sb[b] += lane_sum(s);
      }
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
}  // namespace conv_avx2

const ConvIsaLoops kConvLoopsAvx2 = {"avx2", conv_avx2::loops_f32(),
                                     conv_loops_of_this_file<double>()};

}  // namespace fastnn
