// Portable build of the nn streaming loops (SSE2 on x86-64, NEON on arm64).
#include <cstdint>

#include "common/loss_math.h"
#include "common/optim_math.h"
#include "common/rng.h"
#include "cpu/nn_dispatch.h"

namespace fastnn {
namespace nn_generic {

#include "cpu/nn_loops_impl.h"

}  // namespace nn_generic

const NnIsaLoops kNnLoopsGeneric = {"generic", nn_generic::make_loops<float>(),
                                     nn_generic::make_loops<double>()};

}  // namespace fastnn
