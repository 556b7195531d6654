// float32 products in bfloat16: the "medium" float32 matmul precision.
//
// Both operands are rounded to bfloat16 (nearest even) while they are packed, the products are
// accumulated in float32, and the result goes through the float32 GEMM's epilogue (alpha, beta,
// bias, activation, RBM units). A bfloat16 keeps float32's exponent and 8 significant bits, so
// each product carries a relative error of at most 2^-7 (typically 2^-9) and a k-term dot product
// about 2^-9 * sqrt(k) of its terms' size: fine for training, not for exact linear algebra.
//
// Kernels: AMX (Intel Sapphire Rapids and later: 16 x 16 float32 tiles, 1024 multiply-adds a
// cycle) and AVX512_BF16 (AMD Zen 4/5, Intel Cooper Lake and later: vdpbf16ps, twice the float32
// FMA rate). Chosen at run time from cpuid and, for AMX, the kernel's permission to use the tile
// state; where neither is available the float32 path runs unchanged.
#pragma once
#include <cstdint>

#include "cpu/gemm/gemm.h"

namespace fastnn {

enum class Bf16Kernel : int { none = 0, avx512_bf16 = 1, amx = 2 };

const char* bf16_kernel_name(Bf16Kernel k);
// The CPU, the OS and (for AMX) the kernel's tile-data permission allow it, and this build has it.
bool bf16_supported(Bf16Kernel k);
// The kernel in use: FASTNN_BF16 (amx | avx512_bf16 | none) when set and supported, else the best
// supported one (none: bfloat16 products are unavailable here).
Bf16Kernel bf16_kernel();
// Force a kernel (tests, benchmarks). Returns false (and changes nothing) when unsupported.
bool set_bf16_kernel(Bf16Kernel k);

// torch.set_float32_matmul_precision's levels: 0 "highest", 1 "high", 2 "medium". Only
// "medium" changes anything here: float32 products through gemm() then run in bfloat16.
int matmul_precision();
void set_matmul_precision(int level);
// True when float32 products run in bfloat16 now ("medium" and a kernel available).
bool bf16_products();

// Packed operands: A row-major, rows padded to 16 and k to 32 (zeros); B in column blocks of 16,
// each k/2 rows of 16 (k, k+1) pairs: the AMX B-tile ("VNNI") layout, which vdpbf16ps reads too.
index_t bf16_packed_a_elems(index_t m, index_t k);
index_t bf16_packed_b_elems(index_t k, index_t n);
void bf16_pack_b(std::uint16_t* dst, index_t k, index_t n, const float* b, index_t rsb,
                 index_t csb, int nthreads);

// Rows [k0, k1) (k0 even) of the packed B of a k x n operand, from row-major rows (row k0 at b,
// row stride rsb): an operand stacked from several arrays is packed one part at a time. The part
// that ends at k also writes the zero padding.
void bf16_pack_b_rows(std::uint16_t* dst, index_t k, index_t n, index_t k0, index_t k1,
                      const float* b, index_t rsb, int nthreads);

// The RBM step's row loops on the bfloat16 path (bf16_products() must be true), vectorized like
// its kernels; the same results as cpu/rbm.cpp's plain loops (each column's sum in row order):
// sums[j] += scale * sum_i x[i, j] in double, and dst[i] = Bernoulli(p[i]) of counter i.
void bf16_column_sums(double* sums, const float* x, index_t rows, index_t cols, double scale);
void bf16_bernoulli(float* dst, const float* p, index_t n, std::uint32_t key0, std::uint32_t key1,
                    std::uint32_t stage);

// Rows [r0, r1) (r0 a multiple of 16) of the packed A of an m x k operand, from `a` (row r0 of
// it; strides rsa, csa). The part that ends at m also writes the zero rows below it.
void bf16_pack_a_rows(std::uint16_t* dst, index_t m, index_t k, index_t r0, index_t r1,
                      const float* a, index_t rsa, index_t csa, int nthreads);

// C := alpha * A * B + beta * C, then the epilogue, in bfloat16 products (bf16_kernel() must not
// be none). With `packed_b` (from bf16_pack_b with p.k, p.n), p.b is not read; with `packed_a`
// (bf16_pack_a_rows with p.m, p.k), p.a is not read.
void gemm_bf16(const GemmProblem<float>& p, const std::uint16_t* packed_b = nullptr,
               const std::uint16_t* packed_a = nullptr);

}  // namespace fastnn
