// Per-ISA float32 rows of the activations that need vector math (GELU's normal CDF): each
// kernels/<isa>/act_<isa>.cpp compiles csrc/cpu/kernels/act_rows_impl.h over its vector wrapper
// and fills one table; elementwise.cpp and the GEMM epilogue pick the active ISA's table.
// float64 keeps the scalar functions of common/activations.h.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

struct ActRows {
  const char* name;
  void (*gelu)(float* y, const float* x, index_t n);                       // y may be x
  void (*gelu_backward)(float* dx, const float* dy, const float* z, index_t n);  // dx may be dy
};

extern const ActRows kActRowsGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const ActRows kActRowsAvx2;
extern const ActRows kActRowsAvx512;
#endif

// The table of the active ISA.
const ActRows& act_rows();

}  // namespace fastnn
