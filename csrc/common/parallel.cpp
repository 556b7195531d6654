// The thread pool behind parallel_for (see parallel.h for the contract and why it is built so).
#include "common/parallel.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/fpenv.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define FASTNN_HAVE_PTHREAD 1
#endif
#if defined(__linux__)
#include <sys/resource.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastnn {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

inline void yield_core() {
#if defined(FASTNN_HAVE_PTHREAD)
  sched_yield();
#else
  std::this_thread::yield();
#endif
}

// The job state is one 64-bit word: generation (high half) and next unclaimed chunk (low half).
// A claim is a compare-and-swap on the whole word, so a worker that wakes up late, still holding
// an old generation, can never claim a chunk of the next job.
constexpr std::uint64_t kClosed = 0xffffffffu;  // low half while a new job's fields are written
constexpr std::int64_t kMaxChunksPerJob = 0x7fffffff;
inline std::uint32_t gen_of(std::uint64_t s) { return static_cast<std::uint32_t>(s >> 32); }
inline std::uint64_t low_of(std::uint64_t s) { return s & 0xffffffffu; }

thread_local bool t_in_job = false;
std::atomic<bool> g_hold_workers{false};  // testing::hold_workers  // set while this thread runs chunks: nested jobs run inline

// How long an idle worker keeps looking for the next job before it sleeps. Back-to-back kernels
// (a training step) arrive within microseconds; a worker woken from sleep costs the caller a
// system call and the worker ~10-50 us, during which the caller simply does the work alone.
// Every spin turn yields the core, so a spinning worker costs another library nothing.
constexpr int kPreemptedUs = 30;  // a gap this long between two looks: the core was taken away
constexpr int kLateUs = 1000;                 // a job seen this late while spinning: the core
constexpr std::int64_t kCalmNs = 20'000'000;  // was taken; then sleep between jobs this long

// How often the OS has switched this thread out while it could run: a yield that let another
// thread run counts, and so does a preemption. A virtual machine's host taking the whole virtual
// core away does not: seen from inside, no other thread ran. That tells another library's
// spinning thread on this core (a reason to sleep) from a hypervisor's pause, which a busy host
// causes many times a second and after which spinning on is right.
inline long displaced_count() {
#if defined(__linux__)
  rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) == 0) return ru.ru_nivcsw;
#endif
  static thread_local long n = 0;
  return ++n;  // unknown: as if another thread had run
}

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// How long an idle worker spins (yielding on every turn) before it sleeps. A training step
// leaves gaps of Python work between its kernels, often longer than 0.1 ms: a worker asleep by
// then arrives 20-40 us into the next kernel, and a 50-150 us layer runs mostly on the caller.
// With 5 ms instead of 0.1 ms the ViT example's step took 4% less (6.2 against 6.5 ms, three
// interleaved runs). The spin yields on every turn and sleeps as soon as another thread is
// given the core, so a NumPy call after ours still gets both cores (bench: interference).
constexpr long kSpinUs = 5000;

std::int64_t spin_ns() {
  static const std::int64_t ns = [] {
    const char* e = std::getenv("FASTNN_SPIN_US");
    long us = e ? std::strtol(e, nullptr, 10) : kSpinUs;
    return std::int64_t(us < 0 ? 0 : us) * 1000;
  }();
  return ns;
}

struct Pool {
  std::atomic<std::uint64_t> state{0};
  std::atomic<std::int64_t> done{0};
  // The current job's fields: written while the state is closed, read after seeing it open.
  std::atomic<ChunkFn> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<std::int64_t> n{0};
  std::atomic<int> width{0};
  std::atomic<std::int64_t> posted_ns{0};  // when the current job was published (steady clock)

  std::mutex run_mu;  // one job at a time; a second caller runs its job alone
  std::mutex sleep_mu;
  std::condition_variable wake;
  std::atomic<int> sleepers{0};
  std::atomic<int> nworkers{0};

  // Claims and runs chunks of generation g until none is left (or the job changed).
  void join(std::uint32_t g, int slot) {
    if (slot != 0 && g_hold_workers.load(std::memory_order_relaxed)) return;
    for (;;) {
      std::uint64_t s = state.load(std::memory_order_acquire);
      if (gen_of(s) != g) return;
      if (low_of(s) == kClosed) {  // the publisher is still writing the fields
        cpu_relax();
        continue;
      }
      const ChunkFn f = fn.load(std::memory_order_relaxed);
      void* const c = ctx.load(std::memory_order_relaxed);
      const std::int64_t total = n.load(std::memory_order_relaxed);
      const int w = width.load(std::memory_order_relaxed);
      // Orders the field reads before the claim: if they came from a newer job, that job's
      // publisher changed the state before writing them, and the claim below fails.
      std::atomic_thread_fence(std::memory_order_acquire);
      const std::int64_t chunk = static_cast<std::int64_t>(low_of(s));
      if (slot >= w || chunk >= total) return;
      if (!state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                       std::memory_order_relaxed))
        continue;
      f(c, chunk, slot);
      done.fetch_add(1, std::memory_order_release);
    }
  }

  // Returns once the generation differs from `seen`. `spin` false: sleep at once.
  std::uint32_t wait_for_job(std::uint32_t seen, bool spin, bool* slept, bool* starved,
                              long* mark) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t limit = spin ? spin_ns() : 0;
    *mark = -1;  // taken once the wait outlasts the pause turns (a system call, ~1 us)
    *slept = false;
    *starved = false;
    auto last = t0;
    for (int i = 1;; ++i) {
      const std::uint32_t g = gen_of(state.load(std::memory_order_acquire));
      if (g != seen) return g;
      // Yield the core on every turn after the first few: another library's thread that wants
      // it (OpenBLAS's, for the NumPy call that follows ours) gets it at once.
      if (i < 32) {
        cpu_relax();
      } else {
        if (*mark < 0) *mark = displaced_count();
        const std::int64_t y0 = now_ns();
        yield_core();
        // A yield that gave the core away for a whole time slice: a thread that never yields
        // holds it (OpenBLAS's idle workers spin without yielding for ~0.1 s after a
        // call). This worker then only ever gets the core at the ends of its time slices.
        if (now_ns() - y0 > kLateUs * 1000 && displaced_count() != *mark) *starved = true;
      }
      if ((i & 7) == 0) {
        const auto now = std::chrono::steady_clock::now();
        // A gap between two looks, with this thread switched out meanwhile, means the OS gave
        // this core to another thread for a while: someone else (another library's workers,
        // another process) wants it. (A gap without a switch was the hypervisor pausing the
        // whole virtual core: nobody here wants it, and a sleeping worker would only wake up
        // late for the next job.) Sleeping now
        // hands it over, and a worker woken from sleep for the next job preempts a spinning
        // thread at once, where a spinning worker would wait for the end of its time slice.
        if ((now - last > std::chrono::microseconds(kPreemptedUs) && *mark >= 0 &&
             displaced_count() != *mark) ||
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - t0).count() > limit)
          break;
        last = now;
      }
    }
    std::unique_lock<std::mutex> lk(sleep_mu);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    std::uint32_t g;
    while ((g = gen_of(state.load(std::memory_order_seq_cst))) == seen) wake.wait(lk);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    *slept = true;
    return g;
  }

  void worker_main(int index, std::uint32_t seen) {
    const int slot = index + 1;
    t_in_job = true;  // a chunk that starts a job of its own runs it inline
    // While another thread competes for this core (a spinning worker of OpenBLAS after a NumPy
    // call), a spinning worker only gets the core when the OS ends the other's time slice,
    // milliseconds later, and the caller does the job alone. A sleeping worker woken for the job
    // preempts the spinner at once. So once a spinning worker sees a job a time slice late, it
    // sleeps between jobs for a while, then tries spinning again. The threshold (kLateUs) is
    // well above the shorter delays that are no contention: a virtual machine's core vanishing
    // for tens of microseconds, or the OS briefly placing the worker on the caller's core (then
    // it sees a job only when the caller pauses, 200-400 us late). Sleeping after those, with a
    // 30 us or 200 us threshold, made back-to-back small products up to a third slower, partly
    // because a woken worker tends to be placed on its waker's core.
    std::int64_t calm_until = 0;
    for (;;) {
      const std::int64_t before = now_ns();
      bool slept = false, starved = false;
      long mark = 0;
      seen = wait_for_job(seen, before >= calm_until, &slept, &starved, &mark);
      const std::int64_t seen_at = now_ns();
      // Seeing the job late is one sign; a yield that cost a time slice is the other: while the
      // caller keeps posting jobs, the job seen after such a yield is a fresh one.
      if (starved ||
          (!slept && seen_at - posted_ns.load(std::memory_order_relaxed) > kLateUs * 1000 &&
           mark >= 0 && displaced_count() != mark))
        calm_until = seen_at + kCalmNs;
      DenormalGuard guard;
      join(seen, slot);
    }
  }

  // Called with run_mu held, before the job is published; returns the workers available.
  int ensure_workers(int count) {
    int have = nworkers.load(std::memory_order_relaxed);
    const std::uint32_t g = gen_of(state.load(std::memory_order_relaxed));
    for (; have < count; ++have) {
      try {
        // Detached and never joined: the pool lives for the whole process (see pool()).
        std::thread([this, have, g] { worker_main(have, g); }).detach();
      } catch (...) {  // no more threads to be had: run with those there are
        break;
      }
    }
    nworkers.store(have, std::memory_order_relaxed);
    return have;
  }

  void run(std::int64_t total, int nthreads, ChunkFn f, void* c) {
    const int workers = ensure_workers(nthreads - 1);
    if (nthreads > workers + 1) nthreads = workers + 1;
    const std::uint32_t g = gen_of(state.load(std::memory_order_relaxed)) + 1;
    state.store(std::uint64_t(g) << 32 | kClosed, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    fn.store(f, std::memory_order_relaxed);
    ctx.store(c, std::memory_order_relaxed);
    n.store(total, std::memory_order_relaxed);
    width.store(nthreads, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    posted_ns.store(now_ns(), std::memory_order_relaxed);
    state.store(std::uint64_t(g) << 32, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(sleep_mu); }
      wake.notify_all();
    }
    join(g, 0);
    // Every chunk is claimed; wait for the ones still running on workers.
    for (int i = 0; done.load(std::memory_order_acquire) < total; ++i) {
      if (i < 4096) cpu_relax();
      else yield_core();
    }
  }
};

// The pool is created on first use and never destroyed: detached workers may still be asleep
// on its condition variable when the process exits. A forked child gets a new one (its parent's
// workers do not exist there), and the old one is abandoned.
std::mutex g_pool_mu;
std::atomic<Pool*> g_pool{nullptr};

#if defined(FASTNN_HAVE_PTHREAD)
void before_fork() {
  g_pool_mu.lock();
  if (Pool* p = g_pool.load(std::memory_order_relaxed)) p->run_mu.lock();  // no job mid-flight
}
void after_fork_parent() {
  if (Pool* p = g_pool.load(std::memory_order_relaxed)) p->run_mu.unlock();
  g_pool_mu.unlock();
}
void after_fork_child() {
  g_pool.store(nullptr, std::memory_order_relaxed);
  g_pool_mu.unlock();
}
#endif

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
  std::lock_guard<std::mutex> lk(g_pool_mu);
  p = g_pool.load(std::memory_order_relaxed);
  if (!p) {
#if defined(FASTNN_HAVE_PTHREAD)
    static bool registered = [] {
      return pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0;
    }();
    (void)registered;
#endif
    p = new Pool;
    g_pool.store(p, std::memory_order_release);
  }
  return p;
}

void run_inline(std::int64_t n_chunks, ChunkFn fn, void* ctx) {
  const bool outer = t_in_job;
  t_in_job = true;
  {
    DenormalGuard guard;
    for (std::int64_t c = 0; c < n_chunks; ++c) fn(ctx, c, 0);
  }
  t_in_job = outer;
}

}  // namespace

namespace detail {

void run_parallel(std::int64_t n_chunks, int nthreads, ChunkFn fn, void* ctx) {
  if (n_chunks <= 0) return;
  if (nthreads > n_chunks) nthreads = static_cast<int>(n_chunks);
  if (nthreads <= 1 || t_in_job || n_chunks > kMaxChunksPerJob) {
    // Nested, single-threaded or enormous (no kernel asks for 2^31 chunks): the caller alone.
    run_inline(n_chunks, fn, ctx);
    return;
  }
  Pool* p = pool();
  std::unique_lock<std::mutex> lk(p->run_mu, std::try_to_lock);
  if (!lk.owns_lock()) {  // another thread's job holds the workers: do not queue behind it
    run_inline(n_chunks, fn, ctx);
    return;
  }
  t_in_job = true;
  {
    DenormalGuard guard;
    p->run(n_chunks, nthreads, fn, ctx);
  }
  t_in_job = false;
}

void run_phased(int phases, int parts, int nthreads, PhaseFn fn, void* ctx) {
  if (phases <= 0 || parts <= 0) return;
  const int total = phases * parts;
  // claimed[phase * parts + part], then done[phase]: parts of that phase finished.
  std::unique_ptr<std::atomic<int>[]> state(new std::atomic<int>[std::size_t(total + phases)]);
  for (int i = 0; i < total + phases; ++i)
    state[std::size_t(i)].store(0, std::memory_order_relaxed);
  std::atomic<int>* claimed = state.get();
  std::atomic<int>* done = state.get() + total;
  auto take = [&](int phase, int part, int slot) {
    std::atomic<int>& c = claimed[phase * parts + part];
    int expected = 0;
    if (c.load(std::memory_order_relaxed) != 0 ||
        !c.compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
      return;
    fn(ctx, phase, part, slot);
    done[phase].fetch_add(1, std::memory_order_release);
  };
  const int n = nthreads < parts ? (nthreads < 1 ? 1 : nthreads) : parts;
  // Preferences by slot, not by chunk: the caller is always slot 0 and a worker keeps its slot,
  // while which thread claims chunk 0 varies from job to job.
  parallel_for(n, n, [&](std::int64_t, int slot) {
    for (int phase = 0; phase < phases; ++phase) {
      if (phase > 0) {
        for (int part = 0; part < parts; ++part) take(phase - 1, part, slot);
        // Every part of the last phase is claimed, each by a thread that is running it.
        for (int i = 0; done[phase - 1].load(std::memory_order_acquire) < parts; ++i) {
          if (i < 4096) cpu_relax();
          else yield_core();
        }
      }
      for (int part = slot % n; part < parts; part += n) take(phase, part, slot);
      for (int part = 0; part < parts; ++part) take(phase, part, slot);
    }
  });
}

}  // namespace detail

void testing::hold_workers(bool hold) { g_hold_workers.store(hold, std::memory_order_relaxed); }

double testing::wake_latency_us() {
  std::mutex mu;
  std::condition_variable cv;
  bool go = false, asleep = false;
  std::atomic<std::int64_t> ran_at{0};
#if defined(__linux__)
  const int caller_cpu = sched_getcpu();
#endif
  std::thread sleeper([&] {
#if defined(__linux__)
    // On another core than the caller's, where a pool worker waits: a thread woken on the
    // waker's own core runs after a local reschedule, which says nothing about the pool.
    cpu_set_t set;
    if (caller_cpu >= 0 && sched_getaffinity(0, sizeof(set), &set) == 0 &&
        CPU_COUNT(&set) > 1 && CPU_ISSET(caller_cpu, &set)) {
      CPU_CLR(caller_cpu, &set);
      sched_setaffinity(0, sizeof(set), &set);
    }
#endif
    std::unique_lock<std::mutex> lk(mu);
    asleep = true;
    cv.notify_all();
    cv.wait(lk, [&] { return go; });
    ran_at.store(now_ns(), std::memory_order_release);
  });
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return asleep; });
  }
  // It released the mutex inside wait(): asleep in the kernel, or about to be. Give it time
  // to get there, so that the sample is a wake-up and not a spin.
  std::this_thread::sleep_for(std::chrono::microseconds(300));
  const std::int64_t t0 = now_ns();
  {
    std::lock_guard<std::mutex> lk(mu);
    go = true;
  }
  cv.notify_all();
  for (int i = 0; ran_at.load(std::memory_order_acquire) == 0; ++i) {
    if (i < 100000) cpu_relax();
    else yield_core();  // woken onto this core: let it run
  }
  sleeper.join();
  return double(ran_at.load(std::memory_order_relaxed) - t0) / 1e3;
}

int pool_workers() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  return p ? p->nworkers.load(std::memory_order_relaxed) : 0;
}

}  // namespace fastnn
