#include "common/cpuid.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(FASTNN_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

namespace fastnn {
namespace {

#if defined(FASTNN_HAVE_X86_KERNELS)
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

bool detect(Isa isa) {
  if (isa == Isa::generic) return true;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!(osxsave && avx && fma)) return false;
  unsigned long long xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return false;  // XMM and YMM state enabled by the OS
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  bool avx2 = b & (1u << 5);
  if (isa == Isa::avx2) return avx2;
  bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // opmask, upper ZMM0-15, ZMM16-31
  return avx2 && f && dq && bw && vl && zmm_state;
}
#else
bool detect(Isa isa) { return isa == Isa::generic; }
#endif

bool detect_avx512_bf16() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  unsigned a, b, c, d;
  return detect(Isa::avx512) && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
#else
  return false;
#endif
}

bool detect_amx_bf16() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = d & (1u << 24), bf16 = d & (1u << 22);
  return tile && bf16 && (xgetbv0() & (3ull << 17)) == (3ull << 17);  // XTILECFG, XTILEDATA
#else
  return false;
#endif
}

Isa parse_env() {
  const char* s = std::getenv("FASTNN_ISA");
  Isa best = best_isa();
  if (!s || !*s) return best;
  Isa want = best;
  if (!std::strcmp(s, "generic")) want = Isa::generic;
  else if (!std::strcmp(s, "avx2")) want = Isa::avx2;
  else if (!std::strcmp(s, "avx512")) want = Isa::avx512;
  return cpu_supports(want) ? want : best;  // the Python layer warns about an unusable value
}

std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

bool cpu_supports(Isa isa) {
  static const bool s[3] = {detect(Isa::generic), detect(Isa::avx2), detect(Isa::avx512)};
  return s[static_cast<int>(isa)];
}

Isa best_isa() {
  if (cpu_supports(Isa::avx512)) return Isa::avx512;
  if (cpu_supports(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v < 0) {
    v = static_cast<int>(parse_env());
    g_active.store(v, std::memory_order_release);
  }
  return static_cast<Isa>(v);
}

bool cpu_has_avx512_bf16() {
  static const bool s = detect_avx512_bf16();
  return s;
}

bool cpu_has_amx_bf16() {
  static const bool s = detect_amx_bf16();
  return s;
}

bool set_isa(Isa isa) {
  if (!cpu_supports(isa)) return false;
  g_active.store(static_cast<int>(isa), std::memory_order_release);
  return true;
}

}  // namespace fastnn
