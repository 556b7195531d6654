// bfloat16 products with AVX512_BF16 (compiled with -mavx512bf16 only in this file; chosen at run
// time): the packing every bfloat16 kernel uses, and the vdpbf16ps compute kernel (AMD Zen 4/5,
// Intel Cooper Lake and later).
//
// vdpbf16ps adds, in each of 16 float32 lanes, the products of two bfloat16 pairs: a (k, k+1)
// pair of one A row broadcast to every lane, times the (k, k+1) pairs of 16 B columns, which is
// what the packed B's rows hold. Tile 12 rows x 32 columns: 24 accumulators, 2 B vectors and a
// broadcast in 32 zmm registers, enough independent chains to hide the instruction's latency.
#include <immintrin.h>

// GCC 12 reports its own intrinsics' intentionally undefined vectors once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>
#include <cstring>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/rbm_math.h"
#include "cpu/gemm/bf16_dispatch.h"

namespace fastnn {
namespace avx512bf16 {

#include "cpu/kernels/bf16_finish_impl.h"

// Round to nearest even (NaN stays a quiet NaN), as vcvtne2ps2bf16 does.
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline __mmask16 first(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// Gathers with 32-bit indices: usable while 15 steps of the stride fit in an int32.
inline bool gatherable(index_t stride) {
  return stride > -(index_t(1) << 26) && stride < (index_t(1) << 26);
}

inline __m512i iota_times(index_t stride) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(static_cast<int>(stride)));
}

// 16 floats from base + i*stride (i < count), zeros past count.
inline __m512 load16(const float* base, index_t stride, index_t count, __m512i vidx) {
  const __mmask16 m = first(count);
  if (stride == 1) return _mm512_maskz_loadu_ps(m, base);
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vidx, base, 4);
}

inline __m512i cvt32(__m512 hi, __m512 lo) {  // [lo 0..15, hi 0..15] as bfloat16
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// r[0..15] (rows of 16 dwords) := their transpose, in 64 shuffles: pairs of rows interleaved
// into 4 x 4 blocks per 128-bit lane, then the lanes gathered across registers.
inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {  // u[g + j], lane L: column 4L + j of rows g..g+3
    u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512i v01 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
    const __m512i w01 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i v23 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xee);
    const __m512i w23 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xee);
    r[j] = _mm512_shuffle_i32x4(v01, w01, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(v01, w01, 0xdd);
    r[8 + j] = _mm512_shuffle_i32x4(v23, w23, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(v23, w23, 0xdd);
  }
}

// 16 rows i0.. of an A read along its rows (rsa == 1: A^T stored row-major), k padded to kp:
// 16 x 16 blocks transposed in registers.
void pack_a_transposed(std::uint16_t* dst, index_t kp, index_t i0, index_t m, index_t k,
                       const float* a, index_t csa) {
  const __mmask16 mi = first(m - i0);
  for (index_t q = 0; q < kp; q += 32) {
    __m512i lo[16], hi[16];
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      lo[p] = q + p < k ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mi, a + (q + p) * csa + i0))
                        : _mm512_setzero_si512();
      hi[p] = q + 16 + p < k
                  ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mi, a + (q + 16 + p) * csa + i0))
                  : _mm512_setzero_si512();
    }
    transpose16(lo);
    transpose16(hi);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      _mm512_storeu_si512(dst + (i0 + i) * kp + q,
                          cvt32(_mm512_castsi512_ps(hi[i]), _mm512_castsi512_ps(lo[i])));
  }
}

// One column block of a B read along its columns (rsb == 1: B^T stored row-major, the hidden
// units' w): 16 columns x 32 k converted to (k, k+1) pairs, then transposed to pair rows.
void pack_b_transposed(std::uint16_t* d, index_t kp, index_t j0, index_t cols, index_t k,
                       const float* b, index_t csb) {
  for (index_t q = 0; q < kp; q += 32) {
    __m512i r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      if (j < cols) {
        const float* src = b + (j0 + j) * csb + q;
        r[j] = cvt32(_mm512_maskz_loadu_ps(first(k - q - 16), src + 16),
                     _mm512_maskz_loadu_ps(first(k - q), src));
      } else {
        r[j] = _mm512_setzero_si512();
      }
    }
    transpose16(r);
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(d + (q + 2 * p) * 16, r[p]);
  }
}

void pack_a(std::uint16_t* dst, index_t kp, index_t r0, index_t r1, index_t m, index_t k,
            const float* a, index_t rsa, index_t csa) {
  if (rsa == 1 && csa != 1 && r0 % 16 == 0 && r1 % 16 == 0) {
    for (index_t i = r0; i < r1; i += 16) {
      if (i >= m) {
        std::memset(dst + i * kp, 0, std::size_t(16 * kp) * 2);
      } else {
        pack_a_transposed(dst, kp, i, m, k, a, csa);
      }
    }
    return;
  }
  const bool vec = csa == 1 || gatherable(csa);
  const __m512i vidx = iota_times(csa);
  for (index_t i = r0; i < r1; ++i) {
    std::uint16_t* d = dst + i * kp;
    if (i >= m) {
      std::memset(d, 0, std::size_t(kp) * 2);
      continue;
    }
    const float* src = a + i * rsa;
    if (!vec) {
      for (index_t q = 0; q < kp; ++q) d[q] = q < k ? to_bf16(src[q * csa]) : 0;
      continue;
    }
    for (index_t q = 0; q < kp; q += 32) {
      const __m512 lo = load16(src + q * csa, csa, k - q, vidx);
      const __m512 hi = q + 16 < k ? load16(src + (q + 16) * csa, csa, k - q - 16, vidx)
                                   : _mm512_setzero_ps();
      _mm512_storeu_si512(d + q, cvt32(hi, lo));
    }
  }
}

// Columns [c0, c1) of rows [r0, r1) of the packed A of an m x k operand, from a row-major
// source holding just those columns (column c0 of row i at a + i * rsa): one thread's columns of
// an operand that several threads produce. c0 is a multiple of 32, and so is c1 unless c1 >= k,
// in which case the zero columns up to kp are written too; rows >= m are zeros.
void pack_a_cols(std::uint16_t* dst, index_t kp, index_t r0, index_t r1, index_t m, index_t c0,
                 index_t c1, index_t k, const float* a, index_t rsa) {
  const index_t end = c1 >= k ? kp : c1;
  for (index_t i = r0; i < r1; ++i) {
    std::uint16_t* d = dst + i * kp;
    if (i >= m) {
      std::memset(d + c0, 0, std::size_t(end - c0) * 2);
      continue;
    }
    const float* src = a + i * rsa;
    for (index_t q = c0; q < end; q += 32) {
      const __m512 lo = _mm512_maskz_loadu_ps(first(k - q), src + (q - c0));
      const __m512 hi = _mm512_maskz_loadu_ps(first(k - q - 16), src + (q - c0) + 16);
      _mm512_storeu_si512(d + q, cvt32(hi, lo));
    }
  }
}

void pack_b(std::uint16_t* dst, index_t kp, index_t b0, index_t b1, index_t k, index_t n,
            const float* b, index_t rsb, index_t csb) {
  const bool vec = csb == 1 || gatherable(csb);
  const __m512i vidx = iota_times(csb);
  // cvt32 gives [row k: 16 columns, row k+1: 16 columns]; the packed row wants the pairs.
  const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
  for (index_t blk = b0; blk < b1; ++blk) {
    const index_t j0 = blk * 16, cols = n - j0 < 16 ? n - j0 : 16;
    std::uint16_t* d = dst + blk * 16 * kp;
    if (rsb == 1 && csb != 1) {
      pack_b_transposed(d, kp, j0, cols, k, b, csb);
      continue;
    }
    if (!vec) {
      for (index_t q = 0; q < kp; ++q)
        for (index_t j = 0; j < 16; ++j)
          d[(q / 2) * 32 + j * 2 + (q & 1)] =
              (q < k && j < cols) ? to_bf16(b[q * rsb + (j0 + j) * csb]) : 0;
      continue;
    }
    for (index_t q = 0; q < kp; q += 2) {
      const __m512 r0 = q < k ? load16(b + q * rsb + j0 * csb, csb, cols, vidx)
                              : _mm512_setzero_ps();
      const __m512 r1 = q + 1 < k ? load16(b + (q + 1) * rsb + j0 * csb, csb, cols, vidx)
                                  : _mm512_setzero_ps();
      _mm512_storeu_si512(d + q * 16, _mm512_permutexvar_epi16(inter, cvt32(r1, r0)));
    }
  }
}

void column_sums(double* sums, const float* x, index_t rows, index_t cols, index_t ld,
                 double scale) {
  for (index_t i = 0; i < rows; ++i) {
    const float* r = x + i * ld;
    for (index_t j = 0; j < cols; ++j) sums[j] += scale * double(r[j]);
  }
}

void bernoulli(float* dst, const float* p, index_t n, index_t first_counter, std::uint32_t key0,
               std::uint32_t key1, std::uint32_t stage) {
  const rng::Key key{key0, key1};
  const std::uint32_t c0 = static_cast<std::uint32_t>(first_counter);
  for (index_t i = 0; i < n; ++i)
    dst[i] = rbm::bernoulli<float>(p[i], key, c0 + static_cast<std::uint32_t>(i), stage);
}

// Pair rows q0/2 .. q1/2 of column blocks [b0, b1) of a packed B, from a row-major source whose
// row q0 is at b (q0 even); rows q >= k are zeros.
void pack_b_rows(std::uint16_t* dst, index_t kp, index_t b0, index_t b1, index_t q0, index_t q1,
                 index_t k, index_t n, const float* b, index_t rsb) {
  const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
  for (index_t blk = b0; blk < b1; ++blk) {
    const index_t j0 = blk * 16;
    const __mmask16 mj = first(n - j0);
    std::uint16_t* d = dst + blk * 16 * kp;
    for (index_t q = q0; q < q1; q += 2) {
      const float* src = b + (q - q0) * rsb + j0;
      const __m512 r0 = q < k ? _mm512_maskz_loadu_ps(mj, src) : _mm512_setzero_ps();
      const __m512 r1 = q + 1 < k ? _mm512_maskz_loadu_ps(mj, src + rsb) : _mm512_setzero_ps();
      _mm512_storeu_si512(d + q * 16, _mm512_permutexvar_epi16(inter, cvt32(r1, r0)));
    }
  }
}

// R rows (a multiple of 4, all within the packed A) x NB column blocks of 16.
template <int R, int NB>
void tile(const GemmProblem<float>& p, const std::uint16_t* ap, const std::uint16_t* bp,
          index_t kp, index_t i0, index_t j0, int rows, int cols) {
  __m512 acc[R][NB];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NB; ++v) acc[i][v] = _mm512_setzero_ps();
  const std::uint16_t* a = ap + i0 * kp;
  const std::uint16_t* b = bp + (j0 / 16) * 16 * kp;
  for (index_t q = 0; q < kp; q += 2) {
    __m512bh bv[NB];
#pragma GCC unroll 2
    for (int v = 0; v < NB; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + v * 16 * kp + q * 16);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      std::uint32_t pair;
      std::memcpy(&pair, a + i * kp + q, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
#pragma GCC unroll 2
      for (int v = 0; v < NB; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
    }
  }
  alignas(64) float t[R * 32];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NB; ++v) _mm512_store_ps(t + i * 32 + v * 16, acc[i][v]);
  finish_block(t, 32, rows, cols, p, i0, j0);
}

constexpr int kMt = 12, kNt = 32;

void run(const GemmProblem<float>& p, const std::uint16_t* ap, const std::uint16_t* bp,
         index_t kp, bool along_rows, index_t t0, index_t t1) {
  DenormalGuard guard;
  for_each_task<kMt, kNt>(p, along_rows, t0, t1, [&](index_t i0, index_t j0, int rows, int cols) {
    const int r4 = (rows + 3) / 4 * 4;  // within the packed A: its rows are padded to 16
    if (cols > 16) {
      if (r4 == 12) tile<12, 2>(p, ap, bp, kp, i0, j0, rows, cols);
      else if (r4 == 8) tile<8, 2>(p, ap, bp, kp, i0, j0, rows, cols);
      else tile<4, 2>(p, ap, bp, kp, i0, j0, rows, cols);
    } else {
      if (r4 == 12) tile<12, 1>(p, ap, bp, kp, i0, j0, rows, cols);
      else if (r4 == 8) tile<8, 1>(p, ap, bp, kp, i0, j0, rows, cols);
      else tile<4, 1>(p, ap, bp, kp, i0, j0, rows, cols);
    }
  });
}

}  // namespace avx512bf16

const Bf16Pack kBf16Pack = {avx512bf16::pack_a,      avx512bf16::pack_b,
                            avx512bf16::pack_b_rows, avx512bf16::pack_a_cols,
                            avx512bf16::column_sums, avx512bf16::bernoulli};
const Bf16Compute kBf16Avx512Compute = {avx512bf16::kMt, avx512bf16::kNt, avx512bf16::run};

}  // namespace fastnn
