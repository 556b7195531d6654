// AVX2 build of the recurrent gate passes and their float32 sigmoid/tanh (compiled with AVX2 and
// FMA flags only in this file): 8 lanes, two vectors per block of 16 hidden units.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/activations.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace rnn_avx2 {

#include "cpu/kernels/avx2/vecf_avx2.h"

#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/rnn_rows_impl.h"

}  // namespace rnn_avx2

const RnnIsaRows kRnnRowsAvx2 = {"avx2", rnn_avx2::make_rnn_rows<float>(),
                                 rnn_avx2::make_rnn_rows<double>()};

}  // namespace fastnn
