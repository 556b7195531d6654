#include "cpu/nn_dispatch.h"

#include "common/cpuid.h"

namespace fastnn {

const NnIsaLoops& nn_loops() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kNnLoopsAvx512;
    case Isa::avx2: return kNnLoopsAvx2;
    default: break;
  }
#endif
  return kNnLoopsGeneric;
}

template <>
const NnLoops<float>& nn_loops_for<float>() {
  return nn_loops().f32;
}

template <>
const NnLoops<double>& nn_loops_for<double>() {
  return nn_loops().f64;
}

}  // namespace fastnn
