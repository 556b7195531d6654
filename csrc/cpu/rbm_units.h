// The RBM units of a GEMM epilogue and the plain row loops of a CD step: shared by the general
// step (cpu/rbm.cpp) and the phased one (cpu/rbm_fused.cpp), which must give the same bits.
// For generic-flag files only: an inline template also instantiated in a kernels/<isa>/ file
// could be merged by the linker into that ISA's copy (the bfloat16 kernels keep their own loops).
#pragma once
#include <cstdint>

#include "common/activations.h"
#include "common/rbm_math.h"
#include "common/rng.h"
#include "cpu/gemm/gemm.h"

namespace fastnn {
namespace rbm {

enum Units : int { kLinear = 0, kSigmoid = 1, kSample = 2 };  // Epilogue::rbm

// ep := bias, then the units; a draw of element (i, j) uses counter cnt0 + i * cnt_rs + j of
// stage `stage` (cnt0 places a sub-block of a larger matrix at its counters).
template <class T>
inline void set_units(Epilogue<T>& ep, const T* bias, int units, rng::Key key,
                      std::uint32_t stage, index_t cnt_rs, index_t cnt0 = 0) {
  ep.bias = bias;
  ep.act = units == kLinear ? act::NONE : act::SIGMOID;
  ep.rbm = units;
  ep.key0 = key.k0;
  ep.key1 = key.k1;
  ep.stage = stage;
  ep.cnt_rs = cnt_rs;
  ep.cnt_cs = 1;
  ep.cnt0 = cnt0;
}

// sums[j] += scale * sum_i x[i, j] (row stride ld), in double, rows in order.
template <class T>
inline void column_sums(double* sums, const T* x, index_t rows, index_t cols, index_t ld,
                        double scale) {
  for (index_t i = 0; i < rows; ++i) {
    const T* r = x + i * ld;
    for (index_t j = 0; j < cols; ++j) sums[j] += scale * double(r[j]);
  }
}

// dst[j] := a Bernoulli draw of p[j] with counter first + j of stage `stage`.
template <class T>
inline void bernoulli_row(T* dst, const T* p, index_t n, index_t first, rng::Key key,
                          std::uint32_t stage) {
  for (index_t j = 0; j < n; ++j)
    dst[j] = bernoulli<T>(p[j], key, static_cast<std::uint32_t>(first + j), stage);
}

}  // namespace rbm
}  // namespace fastnn
