// AVX2 build of the float32 activation rows (compiled with AVX2 flags only in this file).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/act_rows.h"

namespace fastnn {
namespace act_avx2 {

#include "cpu/kernels/avx2/vecf_avx2.h"
#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/act_rows_impl.h"

}  // namespace act_avx2

const ActRows kActRowsAvx2 = act_avx2::make_act_rows<act_avx2::VecF>("avx2");

}  // namespace fastnn
