// GEMM kernels for float64 (64x64 tiles only) (see gemm_tiles.cuh).
#include "cuda/gemm_tiles.cuh"

namespace fastnn {
namespace cuda {

template void run_tiles<double, SmallTile>(const GemmParams<double>&, bool, bool);

}  // namespace cuda
}  // namespace fastnn
