// launch_gemm for double (see gemm_launch.cuh).
#include "cuda/gemm_launch.cuh"

namespace fastnn {
namespace cuda {

template void launch_gemm<double>(GemmParams<double>);

}  // namespace cuda
}  // namespace fastnn
