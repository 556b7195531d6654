// launch_gemm for float (see gemm_launch.cuh).
#include "cuda/gemm_launch.cuh"

namespace fastnn {
namespace cuda {

template void launch_gemm<float>(GemmParams<float>);

}  // namespace cuda
}  // namespace fastnn
