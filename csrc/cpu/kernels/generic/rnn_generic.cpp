// Portable build of the recurrent gate passes: the same algorithm, one lane at a time (the
// compiler may still vectorize what it can for the baseline ISA).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/activations.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace rnn_generic {

#include "cpu/kernels/vmath_impl.h"
using VecF = ScalarF;
#include "cpu/kernels/rnn_rows_impl.h"

}  // namespace rnn_generic

const RnnIsaRows kRnnRowsGeneric = {"generic", rnn_generic::make_rnn_rows<float>(),
                                    rnn_generic::make_rnn_rows<double>()};

}  // namespace fastnn
