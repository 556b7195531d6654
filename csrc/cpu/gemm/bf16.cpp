// The bfloat16 GEMM driver: kernel choice (cpuid, OS state, AMX permission, FASTNN_BF16), the
// precision setting, and the two parallel phases of a product (pack, then compute tasks).
#include "cpu/gemm/bf16.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "common/cpuid.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/bf16_dispatch.h"

#if defined(FASTNN_HAVE_BF16_KERNELS)
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace fastnn {
namespace {

#if defined(FASTNN_HAVE_BF16_KERNELS)
// Linux hands out the AMX tile-data state (8 KiB of registers a thread) only on request: one
// arch_prctl for the whole process, made once (a function-local static is initialized once, under
// the compiler's lock, whichever thread gets here first).
bool amx_permission() {
#if defined(__linux__)
  static const bool granted = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
#else
  return false;
#endif
}

bool has_amx() {  // its packing runs AVX512_BF16 code; permission asked only of a capable CPU
  return cpu_has_avx512_bf16() && cpu_has_amx_bf16() && amx_permission();
}
#endif

bool detect(Bf16Kernel k) {
#if defined(FASTNN_HAVE_BF16_KERNELS)
  if (k == Bf16Kernel::avx512_bf16) return cpu_has_avx512_bf16();
  if (k == Bf16Kernel::amx) return has_amx();
#endif
  return k == Bf16Kernel::none;
}

Bf16Kernel best() {
  if (bf16_supported(Bf16Kernel::amx)) return Bf16Kernel::amx;
  if (bf16_supported(Bf16Kernel::avx512_bf16)) return Bf16Kernel::avx512_bf16;
  return Bf16Kernel::none;
}

Bf16Kernel from_env() {
  const char* s = std::getenv("FASTNN_BF16");
  if (!s || !*s) return best();
  Bf16Kernel want = best();
  if (!std::strcmp(s, "amx")) want = Bf16Kernel::amx;
  else if (!std::strcmp(s, "avx512_bf16")) want = Bf16Kernel::avx512_bf16;
  else if (!std::strcmp(s, "none")) want = Bf16Kernel::none;
  return bf16_supported(want) ? want : best();
}

std::atomic<int> g_kernel{-1};
std::atomic<int> g_precision{0};

index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

#if defined(FASTNN_HAVE_BF16_KERNELS)
// Below this many multiply-adds a thread, a second thread costs more to wake than it saves
// (AMX does a 64 x 256 x 784 product in a few microseconds).
constexpr double kMinWorkPerThread = 2.0e6;

// A packed B up to this size stays in L2 while C is walked in memory order.
constexpr double kBInL2Bytes = 1024.0 * 1024.0;

#endif

}  // namespace

#if defined(FASTNN_HAVE_BF16_KERNELS)
const Bf16Compute& bf16_compute() {
  return bf16_kernel() == Bf16Kernel::amx ? kBf16AmxCompute : kBf16Avx512Compute;
}
#endif

const char* bf16_kernel_name(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::amx: return "amx";
    case Bf16Kernel::avx512_bf16: return "avx512_bf16";
    default: return "none";
  }
}

bool bf16_supported(Bf16Kernel k) {
  static const bool s[3] = {detect(Bf16Kernel::none), detect(Bf16Kernel::avx512_bf16),
                            detect(Bf16Kernel::amx)};
  return s[static_cast<int>(k)];
}

Bf16Kernel bf16_kernel() {
  int v = g_kernel.load(std::memory_order_acquire);
  if (v < 0) {
    v = static_cast<int>(from_env());
    g_kernel.store(v, std::memory_order_release);
  }
  return static_cast<Bf16Kernel>(v);
}

bool set_bf16_kernel(Bf16Kernel k) {
  if (!bf16_supported(k)) return false;
  g_kernel.store(static_cast<int>(k), std::memory_order_release);
  return true;
}

int matmul_precision() { return g_precision.load(std::memory_order_relaxed); }
void set_matmul_precision(int level) { g_precision.store(level, std::memory_order_relaxed); }

bool bf16_products() {
  return g_precision.load(std::memory_order_relaxed) == 2 && bf16_kernel() != Bf16Kernel::none;
}

index_t bf16_packed_a_elems(index_t m, index_t k) { return round_up(m, 16) * round_up(k, 32); }
index_t bf16_packed_b_elems(index_t k, index_t n) { return round_up(n, 16) * round_up(k, 32); }

#if defined(FASTNN_HAVE_BF16_KERNELS)
void bf16_pack_b(std::uint16_t* dst, index_t k, index_t n, const float* b, index_t rsb,
                 index_t csb, int nthreads) {
  const index_t kp = round_up(k, 32), blocks = (n + 15) / 16;
  const index_t chunks = nthreads <= 1 ? 1 : std::min<index_t>(blocks, 4 * index_t(nthreads));
  parallel_for(chunks, nthreads, [&](index_t c, int) {
    kBf16Pack.pack_b(dst, kp, blocks * c / chunks, blocks * (c + 1) / chunks, k, n, b, rsb, csb);
  });
}

void bf16_pack_b_rows(std::uint16_t* dst, index_t k, index_t n, index_t k0, index_t k1,
                      const float* b, index_t rsb, int nthreads) {
  const index_t kp = round_up(k, 32), blocks = (n + 15) / 16;
  const index_t q1 = k1 >= k ? kp : k1;
  const index_t chunks = nthreads <= 1 ? 1 : std::min<index_t>(blocks, 4 * index_t(nthreads));
  parallel_for(chunks, nthreads, [&](index_t c, int) {
    kBf16Pack.pack_b_rows(dst, kp, blocks * c / chunks, blocks * (c + 1) / chunks, k0, q1, k, n,
                          b, rsb);
  });
}

void bf16_pack_a_rows(std::uint16_t* dst, index_t m, index_t k, index_t r0, index_t r1,
                      const float* a, index_t rsa, index_t csa, int nthreads) {
  const index_t kp = round_up(k, 32), end = r1 >= m ? round_up(m, 16) : r1;
  const index_t groups = (end - r0) / 16;  // r0 and end are multiples of 16
  const index_t chunks = nthreads <= 1 ? 1 : std::min<index_t>(groups, 4 * index_t(nthreads));
  parallel_for(chunks, nthreads, [&](index_t c, int) {
    const index_t g0 = groups * c / chunks, g1 = groups * (c + 1) / chunks;
    const index_t rows_left = m - r0 - 16 * g0;  // <= 0: only padding rows in this chunk
    kBf16Pack.pack_a(dst + (r0 + 16 * g0) * kp, kp, 0, 16 * (g1 - g0), rows_left, k,
                     rows_left > 0 ? a + 16 * g0 * rsa : a, rsa, csa);
  });
}

void gemm_bf16(const GemmProblem<float>& p, const std::uint16_t* packed_b,
               const std::uint16_t* packed_a) {
  const index_t kp = round_up(p.k, 32), mp = round_up(p.m, 16), blocks = (p.n + 15) / 16;
  const double volume = double(p.m) * double(p.n) * double(p.k);
  const int nth = threads_for(volume, kMinWorkPerThread);
  const std::size_t a_elems = packed_a ? 0 : std::size_t(mp * kp);
  const std::size_t b_elems = packed_b ? 0 : std::size_t(blocks * 16 * kp);
  auto* ws = static_cast<std::uint16_t*>(
      scratch(kScratchGemm, (a_elems + b_elems) * sizeof(std::uint16_t) + 64));
  std::uint16_t* ap = ws;
  const std::uint16_t* bp = packed_b ? packed_b : ws + a_elems;

  // Phase 1: A in groups of 16 rows, B in column blocks (those not given), as one job.
  const index_t a_groups = packed_a ? 0 : mp / 16, b_groups = packed_b ? 0 : blocks;
  const index_t items = a_groups + b_groups;
  const index_t pack_chunks = nth <= 1 ? 1 : std::min<index_t>(items, 4 * index_t(nth));
  if (items > 0) parallel_for(pack_chunks, nth, [&](index_t c, int) {
    const index_t lo = items * c / pack_chunks, hi = items * (c + 1) / pack_chunks;
    if (lo < a_groups) {
      const index_t e = hi < a_groups ? hi : a_groups;
      kBf16Pack.pack_a(ap, kp, lo * 16, e * 16, p.m, p.k, p.a, p.rsa, p.csa);
    }
    if (hi > a_groups) {
      const index_t s = lo > a_groups ? lo : a_groups;
      kBf16Pack.pack_b(ws + a_elems, kp, s - a_groups, hi - a_groups, p.k, p.n, p.b, p.rsb,
                       p.csb);
    }
  });

  // Phase 2: the C blocks, in contiguous runs of tasks (consecutive tasks share a B strip).
  const Bf16Compute& K = bf16_compute();
  const index_t tasks = ((p.m + K.mt - 1) / K.mt) * ((p.n + K.nt - 1) / K.nt);
  const index_t chunks = nth <= 1 ? 1 : std::min<index_t>(tasks, 4 * index_t(nth));
  const bool along_rows = double(blocks) * 16.0 * double(kp) * 2.0 <= kBInL2Bytes;
  const std::uint16_t* a_packed = packed_a ? packed_a : ap;
  parallel_for(chunks, nth, [&](index_t c, int) {
    K.run(p, a_packed, bp, kp, along_rows, tasks * c / chunks, tasks * (c + 1) / chunks);
  });
}
// Both split into fixed chunks (of columns; of elements), so the results do not depend on the
// threads: each column is still summed in row order, each draw uses its own counter.
void bf16_column_sums(double* sums, const float* x, index_t rows, index_t cols, double scale) {
  // Memory-bound: worth a second thread (its own L2, its own load ports) from ~8K elements.
  const int nt = threads_for(double(rows) * double(cols) * 8.0);
  parallel_range(cols, nt > 1 ? 128 : cols, nt, [&](index_t lo, index_t hi) {
    kBf16Pack.column_sums(sums + lo, x + lo, rows, hi - lo, cols, scale);
  });
}

void bf16_bernoulli(float* dst, const float* p, index_t n, std::uint32_t key0, std::uint32_t key1,
                    std::uint32_t stage) {
  const int nt = threads_for(double(n) * 8.0);
  parallel_range(n, nt > 1 ? 4096 : n, nt, [&](index_t lo, index_t hi) {
    kBf16Pack.bernoulli(dst + lo, p + lo, hi - lo, lo, key0, key1, stage);
  });
}
#else
void bf16_pack_a_rows(std::uint16_t*, index_t, index_t, index_t, index_t, const float*, index_t,
                      index_t, int) {}
void bf16_pack_b_rows(std::uint16_t*, index_t, index_t, index_t, index_t, const float*, index_t,
                      int) {}
void bf16_column_sums(double*, const float*, index_t, index_t, double) {}
void bf16_bernoulli(float*, const float*, index_t, std::uint32_t, std::uint32_t, std::uint32_t) {}
void bf16_pack_b(std::uint16_t*, index_t, index_t, const float*, index_t, index_t, int) {}
void gemm_bf16(const GemmProblem<float>& p, const std::uint16_t*, const std::uint16_t*) {
  gemm(p);
}
#endif

}  // namespace fastnn
