// GEMM kernels for float32, 64x64 tiles (see gemm_tiles.cuh).
#include "cuda/gemm_tiles.cuh"

namespace fastnn {
namespace cuda {

template void run_tiles<float, SmallTile>(const GemmParams<float>&, bool, bool);

}  // namespace cuda
}  // namespace fastnn
