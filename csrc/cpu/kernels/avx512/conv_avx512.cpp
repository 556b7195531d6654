// AVX-512 build of the convolution loops of csrc/cpu/conv2d.h: the Winograd transforms and the
// direct (depthwise) planes, compiled with AVX-512 flags only in this file and chosen at run
// time. 16 float lanes where the baseline build had 4, and the stride-2 tile columns gathered
// with two-source permutes instead of one load per element.
#include "cpu/conv2d.h"

namespace fastnn {

const ConvIsaLoops kConvLoopsAvx512 = {"avx512", conv_loops_of_this_file<float>(),
                                     conv_loops_of_this_file<double>()};

}  // namespace fastnn
