// AVX-512 build of the nn streaming loops (compiled with AVX-512 flags only in this file):
// 16 float lanes and native 32-bit vector multiplies for the dropout hash.
#include <cstdint>

#include "common/loss_math.h"
#include "common/optim_math.h"
#include "common/rng.h"
#include "cpu/nn_dispatch.h"

namespace fastnn {
namespace nn_avx512 {

#include "cpu/nn_loops_impl.h"

}  // namespace nn_avx512

const NnIsaLoops kNnLoopsAvx512 = {"avx512", nn_avx512::make_loops<float>(),
                                     nn_avx512::make_loops<double>()};

}  // namespace fastnn
