// The fused gate passes of the recurrent kernels (csrc/cpu/rnn.h, RnnRows), written once over a
// math policy and compiled per ISA.
//
// Included inside an ISA's namespace after vmath_impl.h, once that file has defined `VecF` (its
// float wrapper; ScalarF for the generic build). float runs VecF on whole vectors of a unit
// block and ScalarF on the rest, with the vmath nonlinearities; double runs one lane at a time on
// the C library's exp and tanh (float64 is the checking path, not the fast one). The outputs y
// go out with streaming stores (read back only after the whole forward; ops allocates them
// 64-byte aligned, so each vector is a whole cache line and needs no read for ownership: y's
// rows of one step lie T*H apart, all in one L1 set, and plain stores stalled a quarter of the
// LSTM pass), and so do the saved gates when the driver says they are too many to stay cached
// until the backward reads them (`stream`); the driver calls `fence` once a chunk's rows are
// done (a fence per row cost a sixth of the pass).
//
// A row's units are visited block by block (kRnnBlock units, the last block possibly shorter):
// unit j of a block starting at b0 with U units has its gate q pre-activation at G*b0 + q*U +
// (j - b0) in permuted rows, and at q*H + j in natural ones.

template <class V>
struct FloatMath : V {
  using R = typename V::R;
  static R sig(R x) { return v_sigmoid<V>(x); }
  static R tnh(R x) { return v_tanh<V>(x); }
};

struct DoubleMath : ScalarOf<double> {
  static R sig(R x) { return act::sigmoid(x); }
  static R tnh(R x) { return std::tanh(x); }
};

template <class T>
struct MathOf {
  using Vec = FloatMath<VecF>;
  using One = FloatMath<ScalarF>;
};
template <>
struct MathOf<double> {
  using Vec = DoubleMath;
  using One = DoubleMath;
};

// f(tag, j, p, U) for every lane group of units [u0, u1): tag's type is the math policy to use,
// j the first natural unit, p its permuted offset for gate 0 (gate q at p + q*U).
template <class T, int G, class F>
static inline void each_group(index_t u0, index_t u1, index_t H, F&& f) {
  using Vec = typename MathOf<T>::Vec;
  using One = typename MathOf<T>::One;
  for (index_t b0 = u0; b0 < u1; b0 += kRnnBlock) {
    const index_t U = H - b0 < kRnnBlock ? H - b0 : kRnnBlock;
    const index_t p0 = G * b0;
    index_t j = 0;
    for (; j + Vec::N <= U; j += Vec::N) f(Vec{}, b0 + j, p0 + j, U);
    for (; j < U; ++j) f(One{}, b0 + j, p0 + j, U);
  }
}

// A saved gate value: streamed past the caches, or stored where the backward will find it.
// kStream is a compile-time constant (with_stream), so the row loop has no branch for it.
template <class M, bool kStream, class P, class R>
static inline void save(P* p, R v) {
  if constexpr (kStream) {
    M::stream(p, v);
  } else {
    M::store(p, v);
  }
}

// Gate values v0, v1, ... of unit j into a saved row, H apart.
template <class M, bool kStream, class P, class... R>
static inline void save_gates(P* cache, index_t H, index_t j, R... v) {
  index_t q = 0;
  (save<M, kStream>(cache + (q++) * H + j, v), ...);
}

template <class F>
static inline void with_stream(bool stream, F&& f) {
  if (stream) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

template <class T>
static void lstm_fwd_row(const T* pre, T* c, T* h, T* y, T* cache, bool stream, index_t u0,
                         index_t u1, index_t H) {
  with_stream(stream, [&](auto st) {
    each_group<T, 4>(u0, u1, H, [&](auto m, index_t j, index_t p, index_t U) {
      using M = decltype(m);
      constexpr bool kS = decltype(st)::value;
      const auto ig = M::sig(M::load(pre + p));
      const auto fg = M::sig(M::load(pre + p + U));
      const auto gg = M::tnh(M::load(pre + p + 2 * U));
      const auto og = M::sig(M::load(pre + p + 3 * U));
      const auto cn = M::fma(fg, M::load(c + j), M::mul(ig, gg));
      const auto hn = M::mul(og, M::tnh(cn));
      M::store(c + j, cn);
      M::store(h + j, hn);
      M::stream(y + j, hn);
      if (cache) save_gates<M, kS>(cache, H, j, ig, fg, gg, og, cn);
    });
  });
}

template <class T>
static void lstm_bwd_row(T* dg, T* dh, T* dc, const T* dy, const T* cache, const T* cprev,
                         index_t u0, index_t u1, index_t H) {
  each_group<T, 4>(u0, u1, H, [&](auto m, index_t j, index_t, index_t) {
    using M = decltype(m);
    const auto one = M::set1(T(1));
    const auto ig = M::load(cache + j), fg = M::load(cache + H + j);
    const auto gg = M::load(cache + 2 * H + j), og = M::load(cache + 3 * H + j);
    const auto tc = M::tnh(M::load(cache + 4 * H + j));
    const auto dht = M::add(M::load(dh + j), M::load(dy + j));
    const auto dct = M::fma(M::mul(dht, og), M::sub(one, M::mul(tc, tc)), M::load(dc + j));
    M::store(dg + j, M::mul(M::mul(dct, gg), M::mul(ig, M::sub(one, ig))));
    M::store(dg + H + j, M::mul(M::mul(dct, M::load(cprev + j)), M::mul(fg, M::sub(one, fg))));
    M::store(dg + 2 * H + j, M::mul(M::mul(dct, ig), M::sub(one, M::mul(gg, gg))));
    M::store(dg + 3 * H + j, M::mul(M::mul(dht, tc), M::mul(og, M::sub(one, og))));
    M::store(dc + j, M::mul(dct, fg));
    M::store(dh + j, M::set1(T(0)));
  });
}

template <class T>
static void gru_fwd_row(const T* xp, const T* rec, const T* bh, const T* hprev, T* h, T* y,
                        T* cache, index_t u0, index_t u1, index_t H) {
  each_group<T, 3>(u0, u1, H, [&](auto m, index_t j, index_t p, index_t U) {
    using M = decltype(m);
    const auto r = M::sig(M::add(M::load(xp + p), M::load(rec + p)));
    const auto z = M::sig(M::add(M::load(xp + p + U), M::load(rec + p + U)));
    const auto hn = M::add(M::load(rec + p + 2 * U), M::load(bh + p + 2 * U));
    const auto n = M::tnh(M::fma(r, hn, M::load(xp + p + 2 * U)));
    const auto v = M::fma(z, M::sub(M::load(hprev + j), n), n);  // (1 - z) n + z h
    M::store(h + j, v);
    M::stream(y + j, v);
    if (cache) save_gates<M, true>(cache, H, j, r, z, n, hn);
  });
}

template <class T>
static void gru_bwd_row(T* dgx, T* dgh, T* dh, const T* dy, const T* cache, const T* hprev,
                        index_t u0, index_t u1, index_t H) {
  each_group<T, 3>(u0, u1, H, [&](auto m, index_t j, index_t, index_t) {
    using M = decltype(m);
    const auto one = M::set1(T(1));
    const auto r = M::load(cache + j), z = M::load(cache + H + j);
    const auto n = M::load(cache + 2 * H + j), hn = M::load(cache + 3 * H + j);
    const auto dht = M::add(M::load(dh + j), M::load(dy + j));
    const auto dn = M::mul(M::mul(dht, M::sub(one, z)), M::sub(one, M::mul(n, n)));
    const auto dz = M::mul(M::mul(dht, M::sub(M::load(hprev + j), n)), M::mul(z, M::sub(one, z)));
    const auto dr = M::mul(M::mul(dn, hn), M::mul(r, M::sub(one, r)));
    M::store(dgx + j, dr);
    M::store(dgx + H + j, dz);
    M::store(dgx + 2 * H + j, dn);
    M::store(dgh + j, dr);
    M::store(dgh + H + j, dz);
    M::store(dgh + 2 * H + j, M::mul(dn, r));
    M::store(dh + j, M::mul(dht, z));
  });
}

template <class T>
static void rnn_fwd_row(const T* pre, T* h, T* y, index_t u0, index_t u1, bool relu) {
  const index_t H = u1;  // G = 1: permuted and natural offsets agree, H only bounds the blocks
  each_group<T, 1>(u0, u1, H, [&](auto m, index_t j, index_t, index_t) {
    using M = decltype(m);
    const auto a = M::load(pre + j);
    const auto v = relu ? M::max(M::set1(T(0)), a) : M::tnh(a);
    M::store(h + j, v);
    M::stream(y + j, v);
  });
}

template <class T>
static void rnn_bwd_row(T* dg, T* dh, const T* dy, const T* y, index_t u0, index_t u1, bool relu) {
  const index_t H = u1;
  each_group<T, 1>(u0, u1, H, [&](auto m, index_t j, index_t, index_t) {
    using M = decltype(m);
    const auto one = M::set1(T(1));
    const auto v = M::load(y + j);
    const auto d = relu ? M::select_lt(M::set1(T(0)), v, one, M::set1(T(0)))
                        : M::sub(one, M::mul(v, v));
    M::store(dg + j, M::mul(M::add(M::load(dh + j), M::load(dy + j)), d));
    M::store(dh + j, M::set1(T(0)));
  });
}

template <class T>
static void sigmoid_span(T* y, const T* x, index_t n) {
  using Vec = typename MathOf<T>::Vec;
  using One = typename MathOf<T>::One;
  index_t i = 0;
  for (; i + Vec::N <= n; i += Vec::N) Vec::store(y + i, Vec::sig(Vec::load(x + i)));
  for (; i < n; ++i) One::store(y + i, One::sig(One::load(x + i)));
}

template <class T>
static void tanh_span(T* y, const T* x, index_t n) {
  using Vec = typename MathOf<T>::Vec;
  using One = typename MathOf<T>::One;
  index_t i = 0;
  for (; i + Vec::N <= n; i += Vec::N) Vec::store(y + i, Vec::tnh(Vec::load(x + i)));
  for (; i < n; ++i) One::store(y + i, One::tnh(One::load(x + i)));
}

static void fence_streams() { MathOf<float>::Vec::fence(); }

template <class T>
static RnnRows<T> make_rnn_rows() {
  RnnRows<T> r;
  r.fence = fence_streams;
  r.lstm_fwd = lstm_fwd_row<T>;
  r.lstm_bwd = lstm_bwd_row<T>;
  r.gru_fwd = gru_fwd_row<T>;
  r.gru_bwd = gru_bwd_row<T>;
  r.rnn_fwd = rnn_fwd_row<T>;
  r.rnn_bwd = rnn_bwd_row<T>;
  r.sigmoid = sigmoid_span<T>;
  r.tanh = tanh_span<T>;
  return r;
}
