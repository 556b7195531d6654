// The GEMM frame (BLIS-style): micro-kernel, packing, blocked and direct drivers.
//
// Included once by each kernels/<isa>/gemm_<isa>.cpp *inside* its own namespace, after that file
// has defined the vector wrappers `VecF` and `VecD` (load/store/fma/... of one SIMD register) and
// included <cstring>, <vector> and common/parallel.h. Compiling the same frame per ISA lets the compiler inline the
// micro-kernel and vectorize the packing with that ISA; the per-ISA namespace keeps the linker from
// mixing instantiations built with different flags.
//
// Orientation: C is computed in register tiles of MR rows x NR columns, the NR columns as NV SIMD
// vectors. B (the "vector operand") must be unit-stride along n for the micro-kernel, A (the
// "broadcast operand") may have any strides. gemm.cpp transposes the problem or asks for B to be
// packed when that is not so.

template <class S, int MR, int NV, int KC, int MC, int NC>
struct Frame {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int W = S::W;
  static constexpr int NR = NV * W;

  // ---- store: C := alpha*acc + beta*C, then bias and activation (ep != nullptr) ----

  static inline bool act_in_register(const Epilogue<T>* ep) {
    if (ep->rbm) return false;
    return ep->act == act::NONE || ep->act == act::RELU ||
           (ep->act == act::LEAKY_RELU && ep->act_param > T(0) && ep->act_param <= T(1));
  }

  static inline V act_vec(int kind, V x, T param) {
    // max(0, x) keeps a NaN x (the second operand wins on unordered compares).
    if (kind == act::RELU) return S::max(S::zero(), x);
    // For 0 < slope <= 1, leaky_relu(x) = max(x*slope, x); NaN x again wins. (Slope 0 goes the
    // scalar way: 0 * -inf is NaN there, and max() would turn it into -inf.)
    if (kind == act::LEAKY_RELU) return S::max(S::mul(S::set1(param), x), x);
    return x;
  }

  // Finished tile rows: dst row i := alpha*acc[i] (+ beta * dst row i) (+ bias), activated.
  // dst is C itself (unit-stride rows) or the L1 tile buffer of a transposed store.
  __attribute__((always_inline)) static inline void finish_rows(V (&acc)[MR][NV], int m_rem, int n_rem, T alpha, T beta, T* dst,
                                 index_t ld, const Epilogue<T>* ep, index_t i0, index_t j0) {
    const V va = S::set1(alpha), vb = S::set1(beta);
    const bool inreg = ep && act_in_register(ep);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= m_rem) break;
      T* row = dst + i * ld;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        int nv = n_rem - v * W;
        if (nv <= 0) break;
        V x = alpha == T(1) ? acc[i][v] : S::mul(va, acc[i][v]);
        if (beta != T(0)) x = S::fma(vb, S::loadn(row + v * W, nv), x);
        if (ep) {
          if (ep->bias) {
            x = S::add(x, ep->bias_axis == 1 ? S::loadn(ep->bias + j0 + v * W, nv)
                                             : S::set1(ep->bias[i0 + i]));
          }
          if (inreg) x = act_vec(ep->act, x, ep->act_param);
        }
        S::storen(row + v * W, x, nv);
      }
    }
    if (ep && !inreg) {
      if (ep->rbm) {
        for (int i = 0; i < m_rem; ++i) rbm_row(dst + i * ld, n_rem, ep, i0 + i, j0);
        return;
      }
      if constexpr (std::is_same_v<T, float>) {
        if (ep->act == act::GELU) {  // the vector GELU of csrc/cpu/act_rows.h
          const ActRows& rows = act_rows();
          for (int i = 0; i < m_rem; ++i) rows.gelu(dst + i * ld, dst + i * ld, n_rem);
          return;
        }
      }
      for (int i = 0; i < m_rem; ++i) {
        T* row = dst + i * ld;
        for (int j = 0; j < n_rem; ++j) row[j] = act::forward<T>(ep->act, row[j], ep->act_param);
      }
    }
  }

  // RBM units on one finished row of a tile (columns j0.. of row i): written as plain loops
  // over the row so that the compiler vectorizes the sigmoid and the hash with this ISA.
  // Out of line: the RBM epilogue is rare, and inlined it bloated every tile kernel.
  __attribute__((noinline)) static void rbm_row(T* row, int n, const Epilogue<T>* ep, index_t i,
                                                index_t j0) {
    for (int j = 0; j < n; ++j) row[j] = rbm::sigmoid(row[j]);
    if (ep->rbm != 2) return;
    const rng::Key key{ep->key0, ep->key1};
    const std::uint32_t base = static_cast<std::uint32_t>(ep->cnt0 + i * ep->cnt_rs + j0 * ep->cnt_cs);
    const std::uint32_t step = static_cast<std::uint32_t>(ep->cnt_cs), stage = ep->stage;
    for (int j = 0; j < n; ++j)
      row[j] = rbm::bernoulli<T>(row[j], key, base + std::uint32_t(j) * step, stage);
  }

  __attribute__((noinline)) static T rbm_scalar(T x, const Epilogue<T>* ep, index_t i, index_t j) {
    x = rbm::sigmoid(x);
    if (ep->rbm != 2) return x;
    const std::uint32_t idx = static_cast<std::uint32_t>(ep->cnt0 + i * ep->cnt_rs + j * ep->cnt_cs);
    return rbm::bernoulli<T>(x, rng::Key{ep->key0, ep->key1}, idx, ep->stage);
  }

  __attribute__((always_inline)) static inline void store_tile(V (&acc)[MR][NV], int m_rem, int n_rem, T alpha, T beta, T* c,
                                index_t rsc, index_t csc, const Epilogue<T>* ep, index_t i0,
                                index_t j0) {
    if (csc == 1) {
      if (alpha == T(1) && beta == T(0) && !ep) {  // the plain product: stores only
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          if (i >= m_rem) break;
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) {
            if (n_rem - v * W <= 0) break;
            S::storen(c + i * rsc + v * W, acc[i][v], n_rem - v * W);
          }
        }
        return;
      }
      finish_rows(acc, m_rem, n_rem, alpha, beta, c, rsc, ep, i0, j0);
      return;
    }
    // C not unit-stride along n (a transposed orientation): finish the tile in an L1 buffer,
    // then write it out column by column. Rows past MR are padding the transpose may read.
    alignas(64) T t[(MR > W ? MR : W) * NR];
    if constexpr (S::kTranspose) {
      if (rsc == 1 && beta == T(0)) {
        finish_rows(acc, m_rem, n_rem, alpha, T(0), t, NR, ep, i0, j0);
        for (int j = 0; j < n_rem; j += W) {
          int cols = n_rem - j < W ? n_rem - j : W;
          S::transpose(t + j, NR, m_rem, cols, c + j * csc, csc, m_rem);
        }
        return;
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= m_rem) break;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(t + i * NR + v * W, acc[i][v]);
    }
    for (int i = 0; i < m_rem; ++i) {
      for (int j = 0; j < n_rem; ++j) {
        T* cp = c + i * rsc + j * csc;
        T x = alpha * t[i * NR + j];
        if (beta != T(0)) x += beta * *cp;
        if (ep) {
          if (ep->bias) x += ep->bias_axis == 1 ? ep->bias[j0 + j] : ep->bias[i0 + i];
          x = ep->rbm ? rbm_scalar(x, ep, i0 + i, j0 + j)
                      : act::forward<T>(ep->act, x, ep->act_param);
        }
        *cp = x;
      }
    }
  }

  // ---- micro-kernel ----
  // How the micro-kernel reads A (a compile-time mode, so the packed path keeps its constant
  // step): kPacked a[p*MR + i]; kColumns, column-major in place, a[p*csa + i]; kRows, row i at
  // arow[i], element p at arow[i][p*csa].
  // kStrided: row-major in place, row i at a + i*csa (csa is the row stride in this mode), read
  // through four row pointers and the stride as an address index (rows 0 1 2 4 8 off the first,
  // 3 5 7 11 off the fourth, 6 10 off the seventh, 9): kRows's MR pointers did not fit in
  // registers and were reloaded from the stack every step.
  static constexpr int kRows = 0, kPacked = 1, kColumns = 2, kStrided = 3;

  static inline T strided_at(int i, const char* s0, const char* s3, const char* s6,
                             const char* s9, index_t rb) {
    const char* p;
    switch (i) {
      case 0: p = s0; break;
      case 1: p = s0 + rb; break;
      case 2: p = s0 + 2 * rb; break;
      case 3: p = s3; break;
      case 4: p = s0 + 4 * rb; break;
      case 5: p = s3 + 2 * rb; break;
      case 6: p = s6; break;
      case 7: p = s3 + 4 * rb; break;
      case 8: p = s0 + 8 * rb; break;
      case 9: p = s9; break;
      case 10: p = s6 + 4 * rb; break;
      default: p = s3 + 8 * rb; break;
    }
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
  }
  // B: row p at b + p*rsb, unit-stride along n; FULL_N=false masks loads beyond n_rem.
  // R <= MR rows are computed (the others of acc stay unused): a partial tile at the bottom edge
  // runs a shorter kernel instead of multiplying padding.
  template <int R, int AM, bool FULL_N>
  static inline void tile_rows(index_t k, const T* a, const T* const* arow, index_t csa, const T* b,
                          index_t rsb, int m_rem, int n_rem, T alpha, T beta, T* c, index_t rsc,
                          index_t csc, const Epilogue<T>* ep, index_t i0, index_t j0) {
    // Start pulling the C tile in now: it is read (beta != 0) or written only after the k loop,
    // and a C that has fallen out of cache would otherwise stall the store for a memory latency.
    // A row of the tile (NR elements, 128 bytes) spans three cache lines unless it starts on a
    // line, and NumPy's arrays start 16 bytes past one: there the middle element's line is
    // fetched too, when rows lie 2 KiB and more apart (a C that likely left the cache). With
    // first and last only, the middle line's miss cost 2048^3 8% (268-285 -> 291-311 GF/s);
    // asked for on every tile, it made the LSTM's steps (aligned rows, C in cache) 0.5-3% slower.
    const bool three = rsc * index_t(sizeof(T)) >= 2048 &&
                       ((reinterpret_cast<std::uintptr_t>(c) |
                         static_cast<std::uintptr_t>(rsc * index_t(sizeof(T)))) & 63) != 0;
    for (int i = 0; i < m_rem; ++i) {
      __builtin_prefetch(c + i * rsc, 1, 3);
      if (three) __builtin_prefetch(c + i * rsc + (n_rem / 2) * csc, 1, 3);
      __builtin_prefetch(c + i * rsc + (n_rem - 1) * csc, 1, 3);
    }
    V acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)  // rows >= R are never stored (m_rem <= R); zeroed for clarity
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();

    static_assert(AM != kStrided || MR <= 12, "kStrided addresses at most 12 rows");
    const index_t rb = AM == kStrided ? csa * index_t(sizeof(T)) : 0;
    const char* s0 = AM == kStrided ? reinterpret_cast<const char*>(a) : nullptr;
    const char* s3 = AM == kStrided && R > 3 ? s0 + 3 * rb : s0;
    const char* s6 = AM == kStrided && R > 6 ? s0 + 6 * rb : s0;
    const char* s9 = AM == kStrided && R > 9 ? s0 + 9 * rb : s0;
    for (index_t p = 0; p < k; ++p) {
      // A column-major A read in place touches a new cache line (with long columns a new page)
      // every step, too far apart for the hardware prefetchers: ask for it a few steps ahead.
      if (AM == kColumns) __builtin_prefetch(a + 8 * csa, 0, 3);
      V bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        bv[v] = FULL_N ? S::load(b + v * W) : S::loadn(b + v * W, n_rem - v * W);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        V ai = S::set1(AM == kRows      ? arow[i][p * csa]
                       : AM == kStrided ? strided_at(i, s0, s3, s6, s9, rb)
                                        : a[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
      }
      if (AM == kPacked) a += MR;
      if (AM == kColumns) a += csa;
      if (AM == kStrided) {
        s0 += sizeof(T);
        s3 += sizeof(T);
        s6 += sizeof(T);
        s9 += sizeof(T);
      }
      b += rsb;
    }
    store_tile(acc, m_rem, n_rem, alpha, beta, c, rsc, csc, ep, i0, j0);
  }

  static constexpr int kR2 = MR > 8 ? 8 : MR;  // row counts of the shorter edge kernels
  static constexpr int kR3 = MR > 4 ? 4 : MR;

  template <int AM, bool FULL_N>
  static inline void tile(index_t k, const T* a, const T* const* arow, index_t csa, const T* b,
                          index_t rsb, int m_rem, int n_rem, T alpha, T beta, T* c, index_t rsc,
                          index_t csc, const Epilogue<T>* ep, index_t i0, index_t j0) {
    if (m_rem > kR2) {
      tile_rows<MR, AM, FULL_N>(k, a, arow, csa, b, rsb, m_rem, n_rem, alpha, beta, c, rsc,
                                      csc, ep, i0, j0);
    } else if (m_rem > kR3) {
      tile_rows<kR2, AM, FULL_N>(k, a, arow, csa, b, rsb, m_rem, n_rem, alpha, beta, c,
                                       rsc, csc, ep, i0, j0);
    } else {
      tile_rows<kR3, AM, FULL_N>(k, a, arow, csa, b, rsb, m_rem, n_rem, alpha, beta, c,
                                       rsc, csc, ep, i0, j0);
    }
  }

  // ---- packing (zero-padded to whole slivers, so the micro-kernel never reads past them) ----

  // A block (mc x kc) into slivers of MR rows: dst[s][p][i].
  static void pack_a_sliver(int mr_eff, index_t kc, const T* a, index_t rsa, index_t csa,
                            T* dst) {
    if constexpr (S::kTranspose) {
      if (csa == 1 && MR <= W) {  // rows along k: transpose W-wide column blocks
        for (index_t p = 0; p < kc; p += W) {
          int cols = static_cast<int>(kc - p < W ? kc - p : W);
          S::transpose(a + p, rsa, mr_eff, cols, dst + p * MR, MR, MR);
        }
        return;
      }
    }
    if (rsa == 1) {  // columns along m: each k step is one contiguous run of MR values
      if (mr_eff == MR) {
        // A fixed-size copy the compiler turns into vector moves (the loop over a run-time
        // count stayed scalar: a tenth of a recurrent backward went to this packing).
        for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * MR, a + p * csa, sizeof(T) * MR);
        return;
      }
      for (index_t p = 0; p < kc; ++p) {
        const T* src = a + p * csa;
        T* d = dst + p * MR;
        for (int i = 0; i < mr_eff; ++i) d[i] = src[i];
        for (int i = mr_eff; i < MR; ++i) d[i] = T(0);
      }
      return;
    }
    for (int i = 0; i < mr_eff; ++i) {
      const T* src = a + i * rsa;
      if (csa == 1) {
        for (index_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
      } else {
        for (index_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p * csa];
      }
    }
    for (int i = mr_eff; i < MR; ++i)
      for (index_t p = 0; p < kc; ++p) dst[p * MR + i] = T(0);
  }

  // B panel (kc x nc) into slivers of NR columns: dst[s][p][j].
  static void pack_b_sliver(int nr_eff, index_t kc, const T* b, index_t rsb, index_t csb,
                            T* dst) {
    if (csb == 1) {
      for (index_t p = 0; p < kc; ++p) {
        const T* src = b + p * rsb;
        T* d = dst + p * NR;
        if (nr_eff == NR) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) S::store(d + v * W, S::loadu(src + v * W));
        } else {
          for (int j = 0; j < nr_eff; ++j) d[j] = src[j];
          for (int j = nr_eff; j < NR; ++j) d[j] = T(0);
        }
      }
      return;
    }
    if constexpr (S::kTranspose) {
      if (rsb == 1) {  // columns along k: transpose W x W blocks
        for (int jb = 0; jb < NR; jb += W) {
          int rows = nr_eff - jb;
          rows = rows < 0 ? 0 : (rows > W ? W : rows);
          for (index_t p = 0; p < kc; p += W) {
            int cols = static_cast<int>(kc - p < W ? kc - p : W);
            S::transpose(b + jb * csb + p, csb, rows, cols, dst + p * NR + jb, NR, W);
          }
        }
        return;
      }
    }
    for (int j = 0; j < nr_eff; ++j) {
      const T* src = b + j * csb;
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p * rsb];
    }
    for (int j = nr_eff; j < NR; ++j)
      for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = T(0);
  }

  static void pack_a(index_t mc, index_t kc, const T* a, index_t rsa, index_t csa, T* dst) {
    index_t ns = (mc + MR - 1) / MR;
    for (index_t s = 0; s < ns; ++s) {
      index_t i0 = s * MR;
      int mr_eff = static_cast<int>(mc - i0 < MR ? mc - i0 : MR);
      pack_a_sliver(mr_eff, kc, a + i0 * rsa, rsa, csa, dst + s * MR * kc);
    }
  }

  // Runs fn(chunk, slot) for chunk in [0, count): inline on one thread, else on the pool.
  template <class F>
  static inline void for_chunks(index_t count, int nth, F&& fn) {
    if (nth <= 1 || count <= 1) {
      for (index_t c = 0; c < count; ++c) fn(c, 0);
    } else {
      parallel_for(count, nth, fn);
    }
  }

  // Slivers [s0, s1) of the B panel (kc x nc) into dst, each at its own place (sliver s at
  // dst + s * NR * kc), on the calling thread.
  static void pack_b_slivers(index_t s0, index_t s1, index_t kc, index_t nc, const T* b,
                             index_t rsb, index_t csb, T* dst) {
    for (index_t s = s0; s < s1; ++s) {
      const index_t j0 = s * NR;
      const int nr_eff = static_cast<int>(nc - j0 < NR ? nc - j0 : NR);
      pack_b_sliver(nr_eff, kc, b + j0 * csb, rsb, csb, dst + s * NR * kc);
    }
  }

  // Packs the B panel (kc x nc) in chunks of whole slivers; returns when all are packed.
  static void pack_b_parallel(index_t kc, index_t nc, const T* b, index_t rsb, index_t csb,
                              T* dst, int nth) {
    const index_t ns = (nc + NR - 1) / NR;
    // About four chunks a thread: a worker that starts late still finds some, and a claim costs
    // ~0.1 us next to a sliver's kc x NR copy.
    const index_t chunks = nth <= 1 ? 1 : std::min<index_t>(ns, index_t(nth) * 4);
    for_chunks(chunks, nth, [&](index_t c, int) {
      pack_b_slivers(ns * c / chunks, ns * (c + 1) / chunks, kc, nc, b, rsb, csb, dst);
    });
  }

  // ---- blocked driver: jc (NC) -> pc (KC) -> pack B -> tasks of (MC rows x column group) ----
  // Each task packs its A block into its thread's private buffer (skipped when that thread packed
  // the same block last), so the only waits are the two per B panel: after packing it, and
  // before overwriting it.
  static void blocked(const GemmProblem<T>& p, T* ws, int nth) {
    T* bbuf = ws;
    T* abuf = ws + KC * ((std::min<index_t>(NC, p.n) + NR - 1) / NR) * NR;
    const bool has_ep = p.ep.bias != nullptr || p.ep.act != act::NONE || p.ep.rbm != 0;
    // Split k into equal blocks of at most KC (784 = 4 x 196, not 3 x 256 + 16): a thin last
    // block would pay the full cost of a C pass for little work.
    const index_t kblocks = (p.k + KC - 1) / KC;
    const index_t kc_even = (p.k + kblocks - 1) / kblocks;
    const index_t a_block = index_t((MC + MR - 1) / MR * MR) * KC;  // packed A: whole slivers
    // Row blocks of whole slivers and near-equal size (at most MC rows), and at least four a
    // thread: threads claim them as they go, so equal blocks balance the load and a worker that
    // starts late still finds some (with 6 blocks of 96 rows and a last one of 32, one thread did
    // 288 rows of 512).
    const index_t slivers = (p.m + MR - 1) / MR;
    const index_t per_block = std::max<index_t>(1, MC / MR);
    index_t mblocks = (slivers + per_block - 1) / per_block;
    if (nth > 1) {
      mblocks = std::max<index_t>(mblocks, index_t(nth) * 4);
      mblocks = std::min<index_t>((mblocks + nth - 1) / nth * nth, slivers);
    }
    // Column groups only when the rows are few: each group repacks its A block, a cost of about
    // NR / (the group's width) of the group's work.
    const index_t want = nth <= 1 ? 1 : index_t(nth) * 4;
    const index_t groups_wanted = mblocks >= want ? 1 : (want + mblocks - 1) / mblocks;
    struct Packed { index_t ic = -1, pc = -1, jc = -1; };
    std::vector<Packed> packed(static_cast<std::size_t>(nth));
    for (index_t jc = 0; jc < p.n; jc += NC) {
      const index_t ncb = std::min<index_t>(NC, p.n - jc);
      const index_t nj = (ncb + NR - 1) / NR;
      const index_t groups = std::min<index_t>(groups_wanted, nj);
      for (index_t pc = 0; pc < p.k; pc += kc_even) {
        const index_t kcb = std::min<index_t>(kc_even, p.k - pc);
        const T beta = pc == 0 ? p.beta : T(1);
        const Epilogue<T>* ep = (has_ep && pc + kcb == p.k) ? &p.ep : nullptr;
        pack_b_parallel(kcb, ncb, p.b + pc * p.rsb + jc * p.csb, p.rsb, p.csb, bbuf, nth);
        for_chunks(mblocks * groups, nth, [&](index_t task, int slot) {
          const index_t blk = task / groups, g = task % groups;
          const index_t ic = slivers * blk / mblocks * MR;
          const index_t mcb = std::min<index_t>(slivers * (blk + 1) / mblocks * MR, p.m) - ic;
          const index_t ni = (mcb + MR - 1) / MR;
          T* my_a = abuf + slot * a_block;
          Packed& mine = packed[static_cast<std::size_t>(slot)];
          if (mine.ic != ic || mine.pc != pc || mine.jc != jc) {
            pack_a(mcb, kcb, p.a + ic * p.rsa + pc * p.csa, p.rsa, p.csa, my_a);
            mine = Packed{ic, pc, jc};
          }
          for (index_t jr = nj * g / groups; jr < nj * (g + 1) / groups; ++jr) {
            for (index_t ir = 0; ir < ni; ++ir) {
              const index_t i0 = ic + ir * MR, j0 = jc + jr * NR;
              const int m_rem = static_cast<int>(std::min<index_t>(MR, p.m - i0));
              const int n_rem = static_cast<int>(std::min<index_t>(NR, p.n - j0));
              tile<kPacked, true>(kcb, my_a + ir * MR * kcb, nullptr, 0, bbuf + jr * NR * kcb, NR,
                               m_rem, n_rem, p.alpha, beta, p.c + i0 * p.rsc + j0 * p.csc,
                               p.rsc, p.csc, ep, i0, j0);
            }
          }
        });
      }
    }
  }

  // ---- direct driver (small and medium problems): A read in place, B in place or packed ----
  static void direct(const GemmProblem<T>& p, bool pack_b_operand, T* ws, int nth) {
    const T* b = p.b;
    const index_t rsb = p.rsb;
    const bool has_ep = p.ep.bias != nullptr || p.ep.act != act::NONE || p.ep.rbm != 0;
    const Epilogue<T>* ep = has_ep ? &p.ep : nullptr;
    const index_t ni = (p.m + MR - 1) / MR, nj = (p.n + NR - 1) / NR;
    // Tile (ir, jr); a packed B is read from `packed` (k x NR slivers side by side).
    auto one_tile = [&](index_t ir, index_t jr, const T** arow, const T* packed) {
      const index_t i0 = ir * MR, j0 = jr * NR;
      const int m_rem = static_cast<int>(std::min<index_t>(MR, p.m - i0));
      const int n_rem = static_cast<int>(std::min<index_t>(NR, p.n - j0));
      // Rows past the edge repeat the last real row: computed, never stored.
      for (int i = 0; i < MR; ++i) arow[i] = p.a + (i0 + (i < m_rem ? i : m_rem - 1)) * p.rsa;
      T* cp = p.c + i0 * p.rsc + j0 * p.csc;
      const T* bp = pack_b_operand ? packed + jr * NR * p.k : b + j0;
      const index_t rb = pack_b_operand ? NR : rsb;
      const bool full_n = pack_b_operand || n_rem == NR;
      if (p.rsa == 1 && m_rem == MR) {
        // A column-major (x^T, the K-major weights of conv): one pointer and offsets instead
        // of MR row pointers, which the compiler kept on the stack and reloaded every step
        // (a sixth of the kernel's time at 64 x 3136 x 128).
        if (full_n) {
          tile<kColumns, true>(p.k, p.a + i0, nullptr, p.csa, bp, rb, m_rem, n_rem, p.alpha,
                               p.beta, cp, p.rsc, p.csc, ep, i0, j0);
        } else {
          tile<kColumns, false>(p.k, p.a + i0, nullptr, p.csa, bp, rb, m_rem, n_rem, p.alpha,
                                p.beta, cp, p.rsc, p.csc, ep, i0, j0);
        }
      } else if (p.csa == 1 && m_rem == MR && MR <= 12) {
        // Row-major A, a whole row tile: read through four row pointers (kStrided).
        if (full_n) {
          tile_rows<MR, kStrided, true>(p.k, p.a + i0 * p.rsa, nullptr, p.rsa, bp, rb, m_rem,
                                        n_rem, p.alpha, p.beta, cp, p.rsc, p.csc, ep, i0, j0);
        } else {
          tile_rows<MR, kStrided, false>(p.k, p.a + i0 * p.rsa, nullptr, p.rsa, bp, rb, m_rem,
                                         n_rem, p.alpha, p.beta, cp, p.rsc, p.csc, ep, i0, j0);
        }
      } else if (full_n) {
        tile<kRows, true>(p.k, nullptr, arow, p.csa, bp, rb, m_rem, n_rem, p.alpha, p.beta, cp,
                          p.rsc, p.csc, ep, i0, j0);
      } else {
        tile<kRows, false>(p.k, nullptr, arow, p.csa, bp, rb, m_rem, n_rem, p.alpha, p.beta, cp,
                           p.rsc, p.csc, ep, i0, j0);
      }
    };

    // A packed B split by columns: each chunk packs its own slivers and multiplies every row by
    // them, so no thread waits for the packing of another or reads slivers another core wrote.
    // With B packed in one pass and the tiles dealt out, each core pulled the other's half of the
    // packed B through the shared cache after a barrier. On two Xeon cores, linear(relu) at
    // 256 x 784 -> 128 (w^T packed) went 186 -> 151 us, 128 x 512 -> 512 245 -> 207 us. Only
    // where the slivers divide evenly (or are many), else the tile split balances better.
    if (pack_b_operand && nth > 1 && nj >= nth && (nj % nth == 0 || nj >= 4 * index_t(nth))) {
      const index_t chunks = nj % nth == 0 ? index_t(nth) : nj;
      for_chunks(chunks, nth, [&](index_t c, int) {
        const index_t s0 = nj * c / chunks, s1 = nj * (c + 1) / chunks;
        pack_b_slivers(s0, s1, p.k, p.n, p.b, p.rsb, p.csb, ws);
        const T* arow[MR];
        for (index_t ir = 0; ir < ni; ++ir)
          for (index_t jr = s0; jr < s1; ++jr) one_tile(ir, jr, arow, ws);
      });
      return;
    }

    // While a B sliver (k x NR) fits in L1, walk down the rows under it; once it does not, walk
    // along the row of tiles instead, so the A rows (MR x k) stay cached and B streams from L2.
    const bool rows_outer = p.k * NR * index_t(sizeof(T)) > 32 * 1024;
    // Rows enough: one run of whole row tiles a thread. Threads then never store into the same
    // cache line of C (tiles side by side in one row share the lines at their edges, as C rows
    // are seldom 64-byte aligned), and claim once. On two Xeon cores, against about eight runs
    // of tiles a thread: 64^3 4.6 -> 3.4-4.1 us, 96^3 10.6 -> 7.1-8.6, 1024 x 192 x 64
    // 114 -> 84-87 us, 256^3 125 -> 97-117 (the worker arriving late leaves the caller its run).
    // A B to pack is packed by each run for itself (gemm.cpp gives every thread room): read
    // from the core that packed it, it cost more than packing it again (w @ x^T, 128 x 32 x 784:
    // 50 us on two threads against 37 on one).
    if (nth > 1 && ni >= 2 * index_t(nth)) {
      const index_t chunks = nth, packed_elems = p.k * nj * NR;
      for_chunks(chunks, nth, [&](index_t c, int) {
        T* mine = ws + c * packed_elems;
        if (pack_b_operand) pack_b_slivers(0, nj, p.k, p.n, p.b, p.rsb, p.csb, mine);
        const T* arow[MR];
        const index_t r0 = ni * c / chunks, r1 = ni * (c + 1) / chunks;
        if (rows_outer) {
          for (index_t ir = r0; ir < r1; ++ir)
            for (index_t jr = 0; jr < nj; ++jr) one_tile(ir, jr, arow, mine);
        } else {
          for (index_t jr = 0; jr < nj; ++jr)
            for (index_t ir = r0; ir < r1; ++ir) one_tile(ir, jr, arow, mine);
        }
      });
      return;
    }

    if (pack_b_operand) pack_b_parallel(p.k, p.n, p.b, p.rsb, p.csb, ws, nth);
    const index_t total = ni * nj;
    // Few row tiles: contiguous runs of tiles, about eight a thread; claimed as threads go, they
    // balance the load to within one run.
    const index_t chunks = nth <= 1 ? 1 : std::min<index_t>(total, index_t(nth) * 8);
    for_chunks(chunks, nth, [&](index_t c, int) {
      const T* arow[MR];
      for (index_t t = total * c / chunks; t < total * (c + 1) / chunks; ++t) {
        const index_t jr = rows_outer ? t % nj : t / ni, ir = rows_outer ? t / nj : t % ni;
        one_tile(ir, jr, arow, ws);
      }
    });
  }

  // ---- pre-packed operands (a caller that reuses them across many products) ----
  // A (m x k) into row tiles of at most MR rows, each an MR-row sliver (zero-padded), and B
  // (k x n) into NR-column slivers: the layouts the blocked driver packs into. `packed`
  // multiplies them on the calling thread.
  //
  // Row tiles: MR rows each, except that a short last tile that would run the 4-row kernel
  // (load-bound: 6 loads for 8 FMAs) is merged with the tile before it and the pair split evenly
  // (64 rows at MR = 12: 12 12 12 12 8 8, not 12 12 12 12 12 4).
  struct RowTiles {
    index_t count, full, rem;
    bool merge;
    explicit RowTiles(index_t m) : full(m / MR), rem(m % MR) {
      merge = MR > kR2 && rem > 0 && rem <= kR3 && full > 0 && MR + rem <= 2 * kR2;
      count = full + (rem > 0 ? 1 : 0);
    }
    void at(index_t ir, index_t m, index_t* r0, int* rows) const {
      if (merge && ir >= count - 2) {
        const int both = static_cast<int>(MR + rem), top = both / 2;
        *r0 = (count - 2) * MR + (ir == count - 1 ? top : 0);
        *rows = ir == count - 1 ? both - top : top;
        return;
      }
      *r0 = ir * MR;
      *rows = static_cast<int>(std::min<index_t>(MR, m - ir * MR));
    }
  };

  static index_t packed_a_elems(index_t m, index_t k) { return RowTiles(m).count * MR * k; }

  // Columns [p0, p0 + kc) of a packed A with k columns in all, from a (m x kc): an A assembled
  // from several arrays is packed one part at a time.
  static void pack_a_all(T* dst, index_t m, index_t k, index_t p0, index_t kc, const T* a,
                         index_t rsa, index_t csa) {
    const RowTiles rt(m);
    for (index_t ir = 0; ir < rt.count; ++ir) {
      index_t r0;
      int rows;
      rt.at(ir, m, &r0, &rows);
      pack_a_sliver(rows, kc, a + r0 * rsa, rsa, csa, dst + ir * MR * k + p0 * MR);
    }
  }

  static void pack_b_all(T* dst, index_t k, index_t n, const T* b, index_t rsb, index_t csb) {
    pack_b_parallel(k, n, b, rsb, csb, dst, 1);
  }

  // C (m x n, row stride ldc, unit columns) = beta*C + A @ B, both packed as above, on the
  // calling thread: k in blocks of at most KC (a B micro-panel in L1), under it the B slivers,
  // under those the row tiles.
  static void packed(index_t m, index_t n, index_t k, const T* ap, const T* bp, T* c,
                     index_t ldc, T beta) {
    const RowTiles rt(m);
    const index_t kblocks = (k + KC - 1) / KC;
    const index_t kc_even = (k + kblocks - 1) / kblocks;
    const index_t nj = (n + NR - 1) / NR;
    for (index_t pc = 0; pc < k; pc += kc_even) {
      const index_t kcb = std::min<index_t>(kc_even, k - pc);
      const T bt = pc == 0 ? beta : T(1);
      for (index_t jr = 0; jr < nj; ++jr) {
        const index_t j0 = jr * NR;
        const int n_rem = static_cast<int>(std::min<index_t>(NR, n - j0));
        const T* bs = bp + jr * NR * k + pc * NR;
        for (index_t ir = 0; ir < rt.count; ++ir) {
          index_t r0;
          int rows;
          rt.at(ir, m, &r0, &rows);
          tile<kPacked, true>(kcb, ap + ir * MR * k + pc * MR, nullptr, 0, bs, NR, rows, n_rem,
                              T(1), bt, c + r0 * ldc + j0, ldc, 1, nullptr, 0, 0);
        }
      }
    }
  }

  // The blocked product as `parts` parts of whole tiles (column parts, or row parts when
  // by_rows), each an independent one-thread product that packs its own A blocks and B panels
  // into its own ws_part of the workspace: no barriers, and no core reads a panel that another
  // core packed. Each column part repacks all of A (each row part all of B), 1/(its width) of its
  // work. On two Xeon cores, against the threads sharing each packed panel: 3-8% faster at
  // n = 512-2048, 2-4% at 4096-6400 x 256 x 1024.
  static void blocked_parts(const GemmProblem<T>& p, T* ws, const GemmPlan& plan) {
    const index_t parts = plan.parts, tile = plan.by_rows ? MR : NR;
    const index_t extent = plan.by_rows ? p.m : p.n, tiles = (extent + tile - 1) / tile;
    for_chunks(parts, plan.nthreads, [&](index_t c, int) {
      const index_t lo = tiles * c / parts * tile;
      const index_t len = std::min<index_t>(extent, tiles * (c + 1) / parts * tile) - lo;
      if (len <= 0) return;
      GemmProblem<T> q = p;
      if (plan.by_rows) {
        q.m = len;
        q.a = p.a + lo * p.rsa;
        q.c = p.c + lo * p.rsc;
        q.ep.cnt0 += lo * p.ep.cnt_rs;
      } else {
        q.n = len;
        q.b = p.b + lo * p.csb;
        q.c = p.c + lo * p.csc;
        q.ep.cnt0 += lo * p.ep.cnt_cs;
      }
      if (q.ep.bias && q.ep.bias_axis == (plan.by_rows ? 0 : 1)) q.ep.bias += lo;
      blocked(q, ws + c * plan.ws_part, 1);
    });
  }

  static void run(const GemmProblem<T>& p, const GemmPlan& plan, T* ws) {
    DenormalGuard guard;  // the pool's threads set their own; this covers the calling thread
    if (plan.blocked && plan.parts > 1) {
      blocked_parts(p, ws, plan);
    } else if (plan.blocked) {
      blocked(p, ws, plan.nthreads);
    } else {
      direct(p, plan.pack_b, ws, plan.nthreads);
    }
  }

  static Blocking blocking() { return Blocking{MR, NR, KC, MC, NC}; }
};
