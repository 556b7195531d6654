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
//  - `slot` is unique among the threads running one job and < the thread count asked for, so
//    it can index per-thread buffers; the caller is slot 0;
//  - results never depend on which thread ran a chunk (a chunk writes its own outputs; reductions
//    combine per-chunk partials in chunk order);
//  - safe from several threads at once (a second concurrent job, or a job started from inside a
//    chunk, runs on its calling thread alone) and in a forked child (the child starts a new pool).
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

namespace fastnn {

using ChunkFn = void (*)(void* ctx, std::int64_t chunk, int slot);
using PhaseFn = void (*)(void* ctx, int phase, int part, int slot);

namespace detail {
void run_parallel(std::int64_t n_chunks, int nthreads, ChunkFn fn, void* ctx);
void run_phased(int phases, int parts, int nthreads, PhaseFn fn, void* ctx);
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

// A job in phases: fn(phase, part, slot) for every part of every phase, where no part of a phase
// starts before every part of the phase before it has finished (slot as in parallel_for). One
// wake-up for the whole job instead of one per phase: for a sequence of short dependent steps (an
// RBM update is a dozen 20 us passes, a recurrent layer a product per time step) the wake-ups and
// joins of separate jobs cost as much as the work. The thread of slot c (the caller is 0; a worker
// keeps its slot from job to job) runs parts c, c + n, c + 2n, ... of each phase first (n threads
// taking part), so the same thread handles the same data in every phase and every call, and its
// caches keep it; then it takes any part still unclaimed. At a phase boundary a thread first runs
// the unclaimed parts of the finished phase itself and only then waits, for parts another thread
// has claimed and is running: a worker that never starts costs nothing but its share of the work,
// as in parallel_for. Results must not depend on which thread runs a part (each writes its own
// outputs), and a part's data should not share cache lines with another part's.
template <class F>
inline void parallel_phases(int phases, int parts, int nthreads, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  detail::run_phased(
      phases, parts, nthreads,
      [](void* ctx, int phase, int part, int slot) {
        (*static_cast<Fn*>(ctx))(phase, part, slot);
      },
      const_cast<void*>(static_cast<const void*>(&fn)));
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
