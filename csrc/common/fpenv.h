// Flush denormals to zero inside kernels, and give the caller back its floating-point mode.
// Denormal operands make x86 FMA units take a microcode assist that costs ~100 cycles each;
// weights and gradients drift into that range during training.
#pragma once
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
namespace fastnn {
class DenormalGuard {
 public:
  DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~DenormalGuard() { _mm_setcsr(saved_); }
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;

 private:
  unsigned saved_;
};
}  // namespace fastnn
#else
namespace fastnn {
class DenormalGuard {};
}  // namespace fastnn
#endif
