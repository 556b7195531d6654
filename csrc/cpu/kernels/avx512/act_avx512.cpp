// AVX512 build of the float32 activation rows (compiled with AVX512 flags only in this file).
#include <immintrin.h>

// GCC 12's _mm512 conversions pass an intentionally undefined vector internally, which
// -Wmaybe-uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>
#include <cstring>

#include "cpu/act_rows.h"

namespace fastnn {
namespace act_avx512 {

#include "cpu/kernels/avx512/vecf_avx512.h"
#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/act_rows_impl.h"

}  // namespace act_avx512

const ActRows kActRowsAvx512 = act_avx512::make_act_rows<act_avx512::VecF>("avx512");

}  // namespace fastnn
