// The per-ISA GEMM kernel table. Each kernels/<isa>/gemm_<isa>.cpp fills one, compiled with
// that ISA's flags; gemm.cpp picks a table at run time from cpuid (or FASTNN_ISA).
#pragma once
#include "cpu/gemm/gemm.h"

namespace fastnn {

// Block sizes of one micro-kernel (see the ISA file for why these values).
struct Blocking {
  int mr, nr;      // register tile: mr rows (broadcast operand) x nr columns (vector operand)
  int kc, mc, nc;  // cache blocks: B micro-panel kc x nr in L1, A block mc x kc in L2, B panel in L3
};

// How the driver runs one problem, decided by gemm.cpp from the shape and the strides.
struct GemmPlan {
  bool blocked = false;  // full BLIS loops, both operands packed (large problems)
  bool pack_b = false;   // direct path: pack the vector operand (it is not unit-stride along n)
  int nthreads = 1;
  // Blocked path: `parts` independent one-thread products, one a thread (column parts, or row
  // parts when by_rows), each in its own ws_part elements of the workspace; 1 = the threads
  // share each packed panel (see Frame::blocked_parts).
  int parts = 1;
  bool by_rows = false;
  index_t ws_part = 0;
};

template <class T>
struct GemmKernel {
  Blocking blk;
  void (*run)(const GemmProblem<T>& p, const GemmPlan& plan, T* workspace);
  // Pre-packed operands, for a caller that reuses one across many products (the recurrent
  // kernels' weights, every step): see Frame's pack_a_all, pack_b_all and packed.
  index_t (*packed_a_elems)(index_t m, index_t k);
  void (*pack_a)(T* dst, index_t m, index_t k, index_t p0, index_t kc, const T* a, index_t rsa,
                 index_t csa);
  void (*pack_b)(T* dst, index_t k, index_t n, const T* b, index_t rsb, index_t csb);
  void (*packed)(index_t m, index_t n, index_t k, const T* ap, const T* bp, T* c, index_t ldc,
                 T beta);
};

struct IsaKernels {
  const char* name;
  GemmKernel<float> f32;
  GemmKernel<double> f64;
};

extern const IsaKernels kGenericKernels;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;
#endif

const IsaKernels& active_kernels();

}  // namespace fastnn
