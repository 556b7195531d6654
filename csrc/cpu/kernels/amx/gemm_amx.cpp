// bfloat16 products on AMX tiles (compiled with -mamx-tile -mamx-bf16 only in this file; chosen
// at run time once the kernel has granted this process the tile-data state).
//
// A task is a 32 x 32 block of C in four 16 x 16 float32 accumulator tiles, fed per 32-wide k
// step by two A tiles (16 rows x 32 bfloat16) and two B tiles (16 (k, k+1)-pair rows x 16
// columns, the packed B's layout): eight tiles, all the registers there are. Each tdpbf16ps is
// 16 x 16 x 32 multiply-adds. The tile configuration belongs to the thread, so every run (one
// chunk of tasks on one pool thread) loads it first and releases the tiles after: another library
// on the same thread may configure them differently, and released tiles cost nothing to save on
// a context switch.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/rbm_math.h"
#include "cpu/gemm/bf16_dispatch.h"

namespace fastnn {
namespace amx {

#include "cpu/kernels/bf16_finish_impl.h"

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {  // every tile 16 rows x 64 bytes
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

// Tiles: 0-3 accumulators (C rows 0-15 / 16-31 x columns 0-15 / 16-31), 4-5 A, 6-7 B.
// IN_PLACE (a whole 32 x 32 block, unit-stride C, alpha 1, beta 0 or 1, no epilogue): the
// accumulators start from C (or zero) and are stored straight back, with no pass over a buffer.
template <bool TWO_M, bool TWO_N, bool IN_PLACE = false>
void block(const GemmProblem<float>& p, const std::uint16_t* ap, const std::uint16_t* bp,
           index_t kp, index_t i0, index_t j0, int rows, int cols) {
  const std::uint16_t* a0 = ap + i0 * kp;
  const std::uint16_t* a1 = a0 + 16 * kp;
  const std::uint16_t* b0 = bp + (j0 / 16) * 16 * kp;
  const std::uint16_t* b1 = b0 + 16 * kp;
  const index_t lda = kp * 2;  // bytes
  float* c = p.c + i0 * p.rsc + j0;
  const index_t ldc = p.rsc * index_t(sizeof(float));
  if (IN_PLACE && p.beta != 0.0f) {
    _tile_loadd(0, c, ldc);
    _tile_loadd(1, c + 16, ldc);
    _tile_loadd(2, c + 16 * p.rsc, ldc);
    _tile_loadd(3, c + 16 * p.rsc + 16, ldc);
  } else {
    _tile_zero(0);
    if (TWO_N) _tile_zero(1);
    if (TWO_M) _tile_zero(2);
    if (TWO_M && TWO_N) _tile_zero(3);
  }
  for (index_t q = 0; q < kp; q += 32) {
    _tile_loadd(4, a0 + q, lda);
    _tile_loadd(6, b0 + q * 16, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (TWO_N) {
      _tile_loadd(7, b1 + q * 16, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (TWO_M) {
      _tile_loadd(5, a1 + q, lda);
      _tile_dpbf16ps(2, 5, 6);
      if (TWO_N) _tile_dpbf16ps(3, 5, 7);
    }
  }
  if (IN_PLACE) {
    _tile_stored(0, c, ldc);
    _tile_stored(1, c + 16, ldc);
    _tile_stored(2, c + 16 * p.rsc, ldc);
    _tile_stored(3, c + 16 * p.rsc + 16, ldc);
    return;
  }
  alignas(64) float t[32 * 32];
  _tile_stored(0, t, 128);
  if (TWO_N) _tile_stored(1, t + 16, 128);
  if (TWO_M) _tile_stored(2, t + 16 * 32, 128);
  if (TWO_M && TWO_N) _tile_stored(3, t + 16 * 32 + 16, 128);
  finish_block(t, 32, rows, cols, p, i0, j0);
}

constexpr int kMt = 32, kNt = 32;

void run(const GemmProblem<float>& p, const std::uint16_t* ap, const std::uint16_t* bp,
         index_t kp, bool along_rows, index_t t0, index_t t1) {
  DenormalGuard guard;
  configure();
  const Epilogue<float>& ep = p.ep;
  const bool in_place = p.csc == 1 && p.alpha == 1.0f && (p.beta == 0.0f || p.beta == 1.0f) &&
                        !ep.bias && ep.act == act::NONE && !ep.rbm;
  for_each_task<kMt, kNt>(p, along_rows, t0, t1, [&](index_t i0, index_t j0, int rows, int cols) {
    if (rows > 16) {
      if (in_place && rows == kMt && cols == kNt)
        block<true, true, true>(p, ap, bp, kp, i0, j0, rows, cols);
      else if (cols > 16) block<true, true>(p, ap, bp, kp, i0, j0, rows, cols);
      else block<true, false>(p, ap, bp, kp, i0, j0, rows, cols);
    } else {
      if (cols > 16) block<false, true>(p, ap, bp, kp, i0, j0, rows, cols);
      else block<false, false>(p, ap, bp, kp, i0, j0, rows, cols);
    }
  });
  _tile_release();
}

}  // namespace amx

const Bf16Compute kBf16AmxCompute = {amx::kMt, amx::kNt, amx::run};

}  // namespace fastnn
