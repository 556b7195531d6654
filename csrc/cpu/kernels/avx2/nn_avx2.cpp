// AVX2 build of the nn streaming loops (compiled with -mavx2 -mfma only in this file).
#include <cstdint>

#include "common/loss_math.h"
#include "common/optim_math.h"
#include "common/rng.h"
#include "cpu/nn_dispatch.h"

namespace fastnn {
namespace nn_avx2 {

#include "cpu/nn_loops_impl.h"

}  // namespace nn_avx2

const NnIsaLoops kNnLoopsAvx2 = {"avx2", nn_avx2::make_loops<float>(),
                                     nn_avx2::make_loops<double>()};

}  // namespace fastnn
