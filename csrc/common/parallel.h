// The one parallel runtime every CPU kernel runs on.
//
// A job is n chunks, claimed one at a time from a shared counter. The calling thread claims chunks
// too, and it only ever waits for chunks a worker has already claimed (and is therefore running):
// a worker the OS has not scheduled yet simply finds nothing left to claim. OpenMP's fork/join
// instead makes the caller wait at a barrier for every worker, and a worker descheduled by
// another library's spinning threads (OpenBLAS after a NumPy call, PyTorch's pool) turned a
// 0.03 ms product into a 7 ms one. Idle workers spin briefly, yielding the core on every turn,
// and then sleep on a condition variable, so they never hold a core another library wants.
//
// Guarantees:
//  - every chunk runs exactly once, under a flush-to-zero floating-point mode (restored after);
//  - chunks are claimed in increasing order (run inline, they run in order), so a chunk may wait
//    for the results of lower-numbered chunks of its job (wait_at_least): those are already
//    running on a thread or done, never waiting for a thread to start. One job can so carry
//    stages that depend on each other (pack, then multiply) without a join between them;
//  - `slot` is unique among the threads running one job and < the thread count asked for, so
//    it can index per-thread buffers; the caller is slot 0;
//  - results never depend on which thread ran a chunk (a chunk writes its own outputs; reductions
//    combine per-chunk partials in chunk order);
//  - safe from several threads at once (a second concurrent job, or a job started from inside a
//    chunk, runs on its calling thread alone) and in a forked child (the child starts a new pool).
#pragma once
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace fastnn {

using ChunkFn = void (*)(void* ctx, std::int64_t chunk, int slot);

namespace detail {
void run_parallel(std::int64_t n_chunks, int nthreads, ChunkFn fn, void* ctx);
}  // namespace detail

// Calls fn(chunk, slot) for every chunk in [0, n_chunks) on at most `nthreads` threads.
template <class F>
inline void parallel_for(std::int64_t n_chunks, int nthreads, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  detail::run_parallel(
      n_chunks, nthreads,
      [](void* ctx, std::int64_t c, int slot) { (*static_cast<Fn*>(ctx))(c, slot); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

// Splits [0, n) into ranges of `grain` elements (the last may be shorter) and calls
// fn(lo, hi) for each; chunk boundaries depend only on n and grain, never on the threads.
template <class F>
inline void parallel_range(std::int64_t n, std::int64_t grain, int nthreads, F&& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const std::int64_t chunks = (n + grain - 1) / grain;
  parallel_for(chunks, nthreads, [&](std::int64_t c, int) {
    const std::int64_t lo = c * grain;
    fn(lo, lo + grain < n ? lo + grain : n);
  });
}

// Returns once counter >= target (acquire): for a chunk that needs the results of lower-numbered
// chunks of its job, each of which adds to the counter (release) when done. Spins, then yields.
void wait_slow(const std::atomic<std::int32_t>& counter, std::int32_t target);
inline void wait_at_least(const std::atomic<std::int32_t>& counter, std::int32_t target) {
  if (counter.load(std::memory_order_acquire) < target) wait_slow(counter, target);
}

// Workers alive in the pool (for tests and build_info); 0 until the first parallel job.
int pool_workers();

namespace testing {
// While held, pool workers wake up for jobs but claim no chunk: the situation of workers the OS
// never schedules, which the caller must survive by running every chunk itself.
void hold_workers(bool hold);
// One sample of the machine's wake-up latency: a new thread goes to sleep on a condition
// variable, this one wakes it, and the microseconds until it runs are returned. A job shorter
// than this gains nothing from a sleeping worker (the bench's interference section reports it).
double wake_latency_us();
}  // namespace testing

}  // namespace fastnn
