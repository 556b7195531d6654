// Portable build of the float32 activation rows: the same algorithm, one lane at a time.
#include <cstdint>
#include <cstring>

#include "cpu/act_rows.h"

namespace fastnn {
namespace act_generic {

#include "cpu/kernels/vmath_impl.h"
using VecF = ScalarF;
#include "cpu/kernels/act_rows_impl.h"

}  // namespace act_generic

const ActRows kActRowsGeneric = act_generic::make_act_rows<act_generic::VecF>("generic");

}  // namespace fastnn
