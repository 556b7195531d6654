// Qualifiers for math shared by the C++ and CUDA kernels.
//
// Host builds give every shared function internal linkage (static): the same header is compiled
// into TUs with different ISA flags, and an inline function with external linkage could be
// resolved by the linker to its AVX-512 copy and then run on a CPU without AVX-512.
#pragma once

#if defined(__CUDACC__)
#define FASTNN_HD static __host__ __device__ __forceinline__
#else
#define FASTNN_HD static inline __attribute__((always_inline))
#endif
