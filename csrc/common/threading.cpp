#include "common/threading.h"

#include <algorithm>
#include <atomic>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastnn {
namespace {
std::atomic<int> g_threads{0};  // 0: not set, use OpenMP's default
}

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

void set_num_threads(int n) { g_threads.store(std::max(1, n), std::memory_order_relaxed); }

int threads_for(double work, double min_work_per_thread) {
  int nt = num_threads();
  int useful = static_cast<int>(work / min_work_per_thread);
  return std::max(1, std::min(nt, useful));
}

}  // namespace fastnn
