// AVX-512 build of the recurrent gate passes and their float32 sigmoid/tanh (compiled with
// AVX-512 flags only in this file): 16 lanes, so one vector per block of 16 hidden units.
#include <immintrin.h>

// GCC 12's _mm512 conversions pass an intentionally undefined vector internally, which
// -Wmaybe-uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/activations.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace rnn_avx512 {

#include "cpu/kernels/avx512/vecf_avx512.h"

#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/rnn_rows_impl.h"

}  // namespace rnn_avx512

const RnnIsaRows kRnnRowsAvx512 = {"avx512", rnn_avx512::make_rnn_rows<float>(),
                                   rnn_avx512::make_rnn_rows<double>()};

}  // namespace fastnn
