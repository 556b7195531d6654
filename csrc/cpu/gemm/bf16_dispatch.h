// The bfloat16 kernels' table (cpu/gemm/bf16.cpp drives them). Packing is AVX512_BF16 code
// (every CPU with AMX has AVX512_BF16 too); the compute kernels are per ISA.
#pragma once
#include <cstdint>

#include "cpu/gemm/gemm.h"

namespace fastnn {

struct Bf16Pack {
  // Rows [r0, r1) of the packed A (row stride kp; rows >= m and columns >= k are zeros).
  void (*pack_a)(std::uint16_t* dst, index_t kp, index_t r0, index_t r1, index_t m, index_t k,
                 const float* a, index_t rsa, index_t csa);
  // Column blocks [b0, b1) of the packed B (16 columns x kp each).
  void (*pack_b)(std::uint16_t* dst, index_t kp, index_t b0, index_t b1, index_t k, index_t n,
                 const float* b, index_t rsb, index_t csb);
  // Pair rows [q0/2, q1/2) of column blocks [b0, b1), from a row-major B whose row q0 is at b.
  void (*pack_b_rows)(std::uint16_t* dst, index_t kp, index_t b0, index_t b1, index_t q0,
                      index_t q1, index_t k, index_t n, const float* b, index_t rsb);
  // Columns [c0, c1) of rows [r0, r1) of the packed A of an m x k operand, from a row-major
  // source of those columns (column c0 of row i at a + i * rsa); c0 a multiple of 32, c1 too
  // unless c1 >= k (then the padding up to kp too).
  void (*pack_a_cols)(std::uint16_t* dst, index_t kp, index_t r0, index_t r1, index_t m,
                      index_t c0, index_t c1, index_t k, const float* a, index_t rsa);
  // The RBM step's row loops (bf16.h), vectorized with the same AVX-512 flags.
  void (*column_sums)(double* sums, const float* x, index_t rows, index_t cols, index_t ld,
                      double scale);
  void (*bernoulli)(float* dst, const float* p, index_t n, index_t first_counter,
                    std::uint32_t key0, std::uint32_t key1, std::uint32_t stage);
};

struct Bf16Compute {
  int mt, nt;  // the C block one task computes (rows x columns)
  // Tasks [t0, t1) in one of two orders. along_rows: task t is row block t / (column blocks),
  // column block t % (column blocks), so consecutive tasks walk C (and A) in memory order, for a
  // packed B that stays in L2 anyway. Otherwise the transpose of that, so that consecutive tasks
  // share a B strip. ap/bp packed as above with row stride kp.
  void (*run)(const GemmProblem<float>& p, const std::uint16_t* ap, const std::uint16_t* bp,
              index_t kp, bool along_rows, index_t t0, index_t t1);
};

#if defined(FASTNN_HAVE_BF16_KERNELS)
extern const Bf16Pack kBf16Pack;
extern const Bf16Compute kBf16Avx512Compute;
extern const Bf16Compute kBf16AmxCompute;
// The compute kernel of bf16_kernel() (which must not be none).
const Bf16Compute& bf16_compute();
#endif

}  // namespace fastnn
