#include "common/host_cache.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FASTNN_HOST_CACHE_ATFORK 1
#endif

namespace fastnn {
namespace {

constexpr std::size_t kGrain = std::size_t(1) << 21;  // one huge page
constexpr long long kDefaultLimitMb = 512;

std::size_t limit_from_env() {
  const char* e = std::getenv("FASTNN_HOST_CACHE_MB");
  char* end = nullptr;
  long long mb = e ? std::strtoll(e, &end, 10) : -1;
  if (!e || end == e || mb < 0) mb = kDefaultLimitMb;
  return std::size_t(mb) << 20;
}

struct Cache {
  std::mutex mu;
  std::vector<std::pair<void*, std::size_t>> blocks;  // oldest first
  std::size_t bytes = 0;
  const std::size_t limit = limit_from_env();  // fixed at start: read without the mutex
};

// Never destroyed: arrays that own a block may be freed after static destructors have run.
// A fork never copies the mutex locked: the fork handlers hold it across the fork (another
// thread of a free-threaded Python could otherwise be inside take or give).
Cache& cache() {
  static Cache* c = [] {
    Cache* made = new Cache;
#if defined(FASTNN_HOST_CACHE_ATFORK)
    pthread_atfork([] { cache().mu.lock(); }, [] { cache().mu.unlock(); },
                   [] { cache().mu.unlock(); });
#endif
    return made;
  }();
  return *c;
}

void* fresh(std::size_t size) {
  void* p = std::aligned_alloc(kGrain, size);
  if (!p) {
    host_cache_release();
    p = std::aligned_alloc(kGrain, size);
    if (!p) throw std::bad_alloc();
  }
#if defined(MADV_HUGEPAGE)
  madvise(p, size, MADV_HUGEPAGE);  // a hint: fewer faults and TLB misses where THP is on
#endif
  return p;
}

}  // namespace

void* host_cache_take(std::size_t bytes, std::size_t* granted) {
  const std::size_t want = (bytes + kGrain - 1) / kGrain * kGrain;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    // Best fit among blocks at most a quarter larger, so a small request does not pin a large
    // block that a large one will want.
    std::size_t best = c.blocks.size();
    for (std::size_t i = 0; i < c.blocks.size(); ++i) {
      const std::size_t s = c.blocks[i].second;
      if (s >= want && s <= want + want / 4 &&
          (best == c.blocks.size() || s < c.blocks[best].second))
        best = i;
    }
    if (best < c.blocks.size()) {
      void* p = c.blocks[best].first;
      *granted = c.blocks[best].second;
      c.bytes -= *granted;
      c.blocks.erase(c.blocks.begin() + std::ptrdiff_t(best));
      return p;
    }
  }
  *granted = want;
  return fresh(want);
}

void host_cache_give(void* p, std::size_t granted) {
  if (!p) return;
  Cache& c = cache();
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (granted > c.limit) {
      drop.push_back(p);
    } else {
      c.blocks.emplace_back(p, granted);
      c.bytes += granted;
      std::size_t n = 0;
      while (c.bytes > c.limit) {
        c.bytes -= c.blocks[n].second;
        drop.push_back(c.blocks[n++].first);
      }
      c.blocks.erase(c.blocks.begin(), c.blocks.begin() + std::ptrdiff_t(n));
    }
  }
  for (void* q : drop) std::free(q);
}

std::size_t host_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.bytes;
}

std::size_t host_cache_limit() { return cache().limit; }

void host_cache_release() {
  Cache& c = cache();
  std::vector<std::pair<void*, std::size_t>> drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    drop.swap(c.blocks);
    c.bytes = 0;
  }
  for (auto& b : drop) std::free(b.first);
}

}  // namespace fastnn
