// Per-ISA tables of the streaming loops behind the optimizer updates, dropout and the
// reductions around them. Each kernels/<isa>/nn_<isa>.cpp compiles csrc/cpu/nn_loops_impl.h with
// its ISA's flags and fills one table; optim.cpp and dropout.cpp pick a table at run time from
// cpuid (or FASTNN_ISA), and split the index range across threads themselves.
//
// Why per ISA: these loops are compute-bound at the sizes a training step sees (an Adam update
// is a sqrt and a divide per element; a dropout mask is four 32-bit multiplies per element), and
// the x86-64 baseline (SSE2) has neither 32-bit vector multiplies nor more than 4 float lanes.
#pragma once
#include <cstdint>

#include "common/rng.h"

namespace fastnn {

using index_t = std::int64_t;

// SGD variants (bit flags).
enum SgdVariant : int { kSgdMomentum = 1, kSgdNesterov = 2, kSgdDecay = 4 };

template <class T>
struct NnLoops {
  // All loops work on [lo, hi) of contiguous arrays.
  void (*sgd)(T* p, T* v, const T* g, index_t lo, index_t hi, T lr, T mu, T wd, int variant);
  // alpha: the bias-corrected step size; c1 = 1 - b1, c2 = 1 - b2 (computed once, in double);
  // mode: optim::Decay.
  void (*adam)(T* p, T* m, T* v, const T* g, index_t lo, index_t hi, T alpha, T b1, T c1, T b2,
               T c2, T eps, T decay, int mode);
  void (*rmsprop)(T* p, T* sq, T* vel, const T* g, index_t lo, index_t hi, T lr, T rho, T c_rho,
                  T eps, T mu, bool momentum);
  // y = x * (keep ? scale : 0), mask (optional) = keep. [lo, hi) must not straddle a multiple
  // of 2^32 (the counter's upper half is fixed within a call).
  void (*dropout)(T* y, std::uint8_t* mask, const T* x, index_t lo, index_t hi, rng::Key key,
                  std::uint32_t thr, T scale);
  double (*sum_squares)(const T* x, index_t lo, index_t hi);
  // out[0] = sum |w|, out[1] = sum w^2, in double.
  void (*abs_square_sums)(const T* w, index_t lo, index_t hi, double* out);
  // g += a * sign(w) + b * w.
  void (*reg_grad)(T* g, const T* w, index_t lo, index_t hi, T a, T b);
};

struct NnIsaLoops {
  const char* name;
  NnLoops<float> f32;
  NnLoops<double> f64;
};

extern const NnIsaLoops kNnLoopsGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const NnIsaLoops kNnLoopsAvx2;
extern const NnIsaLoops kNnLoopsAvx512;
#endif

// The table of the active ISA.
const NnIsaLoops& nn_loops();

// The active table's loops for T (float or double).
template <class T>
const NnLoops<T>& nn_loops_for();
template <>
const NnLoops<float>& nn_loops_for<float>();
template <>
const NnLoops<double>& nn_loops_for<double>();

}  // namespace fastnn
