// GEMM entry points: pick the ISA table, orient the problem, plan the run, provide workspace.
#include "cpu/gemm/gemm.h"

#include <algorithm>
#include <utility>

#include "common/cpuid.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/bf16.h"
#include "cpu/gemm/dispatch.h"

namespace fastnn {

const IsaKernels& active_kernels() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kAvx512Kernels;
    case Isa::avx2: return kAvx2Kernels;
    default: break;
  }
#endif
  return kGenericKernels;
}

namespace {


index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

// Problems at least this big (multiply-adds) take the blocked path: packing both operands pays
// for itself once each packed element is reused many times.
constexpr double kBlockedVolume = 160.0 * 160.0 * 160.0;

// The narrowest part (columns or rows) of a blocked product split among the threads. On two
// Xeon cores, against shared panels: 300 x 300 x 1100 0.85 -> 0.66-0.74 ms and 160 x 160 x 2000
// 0.47 -> 0.39 ms with parts down to 64 wide (0.46 at 128), 100 x 300 x 3000 0.96 -> 0.73.
constexpr index_t kPartMin = 64;

// Workspace of the blocked path on one thread: a B panel (KC x at most NC columns) and an A
// block; padded to whole cache lines, so that parts side by side do not share one.
index_t blocked_ws(const Blocking& b, index_t n) {
  return round_up(index_t(b.kc) * round_up(std::min<index_t>(b.nc, n), b.nr) +
                      round_up(b.mc, b.mr) * b.kc, 16);
}

// C^T = B^T A^T: swap the operands and transpose every stride.
template <class T>
GemmProblem<T> transposed(const GemmProblem<T>& p) {
  GemmProblem<T> q = p;
  q.m = p.n;
  q.n = p.m;
  q.a = p.b; q.rsa = p.csb; q.csa = p.rsb;
  q.b = p.a; q.rsb = p.csa; q.csb = p.rsa;
  q.rsc = p.csc; q.csc = p.rsc;
  q.ep.bias_axis = 1 - p.ep.bias_axis;
  q.ep.cnt_rs = p.ep.cnt_cs; q.ep.cnt_cs = p.ep.cnt_rs;
  return q;
}

// Rough cycle estimate of the direct path for one orientation: padded tile work, plus packing B
// when it is not unit-stride along n, plus slower stores when C is not unit-stride along n.
template <class T>
double direct_cost(const GemmProblem<T>& p, const Blocking& b) {
  const double lanes = 64.0 / sizeof(T);  // per-cycle FMA lanes, any ISA: only ratios matter
  double mp = double(round_up(p.m, b.mr)), np = double(round_up(p.n, b.nr));
  double cost = mp * np * double(p.k) / lanes;
  if (p.csb != 1) cost += double(p.k) * np * 0.25;
  if (p.csc != 1) cost += double(p.m) * double(p.n) * 0.5;
  return cost;
}

// The direct path keeps the whole (packed or in-place) B operand in L2 while it walks over A's
// rows in place, and stores each C tile once; it wins while B fits there.
constexpr double kDirectMaxBBytes = 512.0 * 1024.0;

template <class T>
void gemm_impl(const GemmProblem<T>& p0, const GemmKernel<T>& K) {
  const Blocking& b = K.blk;
  GemmProblem<T> p = p0;
  GemmPlan plan;
  const double volume = double(p.m) * double(p.n) * double(p.k);
  // A second thread pays off from 64^3 multiply-adds: since idle workers spin for 5 ms, a
  // product called in a loop finds its worker awake, and on an Intel Xeon (2 MiB L2) two threads
  // took 3.8-4.2 us at 64^3 against 4.1-4.5 on one, 6.9-7.1 against 7.8 at 72^3 (with workers
  // that slept after 0.1 ms, one thread had won at 64^3). A worker that does not come only
  // leaves its chunks to the caller. (Zen 5 under OpenMP had two threads winning at 64^3.)
  plan.nthreads = threads_for(volume, 120000.0);

  GemmProblem<T> q = transposed(p);
  auto b_bytes_of = [&](const GemmProblem<T>& r) {
    return double(r.k) * double(round_up(r.n, b.nr)) * sizeof(T);
  };
  const bool p_fits = b_bytes_of(p) <= kDirectMaxBBytes, q_fits = b_bytes_of(q) <= kDirectMaxBBytes;
  // The cheaper orientation, unless only the other keeps its B operand within the direct path's
  // budget: a short, wide product (64 x 3136 x 128, a CNN's dense layer) is then direct with
  // B = the short side, where the blocked path packed all of the wide operand for 64 rows.
  if (p_fits == q_fits ? direct_cost(q, b) < direct_cost(p, b) : q_fits) p = q;
  const double b_bytes = b_bytes_of(p);
  if (volume >= kBlockedVolume && b_bytes > kDirectMaxBBytes) {
    plan.blocked = true;
    p = p0;
    // Keep C unit-stride along n when one orientation allows it.
    if (p.csc != 1 && p.rsc == 1) p = transposed(p);
  } else {
    plan.pack_b = p.csb != 1;
  }

  // Large enough blocked products go as one independent part a thread (Frame::blocked_parts):
  // column parts when the columns are many, unless the rows outnumber them more than 4 to 1;
  // then row parts. A column part repacks all of A (m x k), a row part all of B (k x n): for
  // the recurrent input gradient (6400 x 256, k = 768) row parts took 9.2 ms against 10.2, for
  // 4096 x 512 x 512 7.3 against 7.9; at 2048 x 1024 x 1024 column parts still won (15.1
  // against 16.2).
  if (plan.blocked && plan.nthreads > 1) {
    const index_t parts = plan.nthreads;
    const bool tall = p.m > 4 * p.n && p.m >= parts * kPartMin;
    if (!tall && p.n >= parts * kPartMin) {
      const index_t part_n = ((p.n + b.nr - 1) / b.nr + parts - 1) / parts * b.nr;
      plan.parts = int(parts);
      plan.ws_part = blocked_ws(b, part_n);
    } else if (p.m >= parts * kPartMin) {
      plan.parts = int(parts);
      plan.by_rows = true;
      plan.ws_part = blocked_ws(b, p.n);
    }
  }
  index_t ws_elems = 0;
  if (plan.parts > 1) {
    ws_elems = plan.ws_part * plan.parts;
  } else if (plan.blocked) {
    ws_elems = blocked_ws(b, p.n) + index_t(plan.nthreads - 1) * round_up(b.mc, b.mr) * b.kc;
  } else if (plan.pack_b) {
    // A packed B for each thread: the direct path's row runs pack their own (Frame::direct).
    ws_elems = p.k * round_up(p.n, b.nr) * plan.nthreads;
  }
  T* ws = ws_elems ? static_cast<T*>(scratch(kScratchGemm, std::size_t(ws_elems) * sizeof(T))) : nullptr;
  K.run(p, plan, ws);
}

}  // namespace

void gemm(const GemmProblem<float>& p) {
  if (bf16_products()) {  // the "medium" float32 matmul precision (cpu/gemm/bf16.h)
    gemm_bf16(p);
    return;
  }
  gemm_impl(p, active_kernels().f32);
}
void gemm(const GemmProblem<double>& p) { gemm_impl(p, active_kernels().f64); }

}  // namespace fastnn
