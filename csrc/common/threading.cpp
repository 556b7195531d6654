#include "common/threading.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace fastnn {
namespace {

std::atomic<int> g_threads{0};  // 0: not set, use the default

// OMP_NUM_THREADS (its first entry, as OpenMP reads a nested list) when set, else the cores this
// process may run on (its affinity mask: a container or taskset may allow fewer than exist).
int default_threads() {
  if (const char* e = std::getenv("OMP_NUM_THREADS")) {
    long n = std::strtol(e, nullptr, 10);
    if (n > 0) return static_cast<int>(std::min<long>(n, 1024));
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  static const int dflt = default_threads();
  return dflt;
}

void set_num_threads(int n) { g_threads.store(std::max(1, std::min(n, 1024)), std::memory_order_relaxed); }

int threads_for(double work, double min_work_per_thread) {
  int nt = num_threads();
  int useful = static_cast<int>(work / min_work_per_thread);
  return std::max(1, std::min(nt, useful));
}

}  // namespace fastnn
