// The streaming loops of csrc/cpu/nn_dispatch.h, written once in plain C++ that the compiler
// vectorizes for whatever ISA the including file is compiled for.
//
// Included once by each kernels/<isa>/nn_<isa>.cpp *inside* its own namespace, after that file
// has included common/optim_math.h, common/loss_math.h, common/rng.h and cpu/nn_dispatch.h. The
// per-ISA namespace keeps the linker from mixing instantiations built with different flags; use
// nothing here with external linkage from a library header (it could be resolved to this ISA's
// copy and run on a CPU without it).

// No __restrict on the updates: nothing stops a caller from passing one array in two roles, and
// the compiler's run-time overlap check is cheap next to the loop.
template <class T, bool MOM, bool NEST, bool WD>
static void sgd_range(T* p, T* v, const T* g, index_t lo, index_t hi, T lr, T mu, T wd) {
  if (MOM) {
    for (index_t i = lo; i < hi; ++i) optim::sgd<T, true, NEST, WD>(p[i], v[i], g[i], lr, mu, wd);
  } else {
    T unused = T(0);
    for (index_t i = lo; i < hi; ++i) optim::sgd<T, false, false, WD>(p[i], unused, g[i], lr, mu,
                                                                       wd);
  }
}

template <class T>
static void sgd_loop(T* p, T* v, const T* g, index_t lo, index_t hi, T lr, T mu, T wd,
                     int variant) {
  switch (variant & (kSgdMomentum | kSgdNesterov | kSgdDecay)) {
    case kSgdMomentum: return sgd_range<T, true, false, false>(p, v, g, lo, hi, lr, mu, wd);
    case kSgdMomentum | kSgdDecay:
      return sgd_range<T, true, false, true>(p, v, g, lo, hi, lr, mu, wd);
    case kSgdMomentum | kSgdNesterov:
      return sgd_range<T, true, true, false>(p, v, g, lo, hi, lr, mu, wd);
    case kSgdMomentum | kSgdNesterov | kSgdDecay:
      return sgd_range<T, true, true, true>(p, v, g, lo, hi, lr, mu, wd);
    case kSgdDecay: return sgd_range<T, false, false, true>(p, v, g, lo, hi, lr, mu, wd);
    default: return sgd_range<T, false, false, false>(p, v, g, lo, hi, lr, mu, wd);
  }
}

template <class T, int DECAY>
static void adam_range(T* p, T* m, T* v, const T* g, index_t lo, index_t hi, T alpha, T b1, T c1,
                       T b2, T c2, T eps, T decay) {
  for (index_t i = lo; i < hi; ++i)
    optim::adam<T, DECAY>(p[i], m[i], v[i], g[i], alpha, b1, c1, b2, c2, eps, decay);
}

template <class T>
static void adam_loop(T* p, T* m, T* v, const T* g, index_t lo, index_t hi, T alpha, T b1, T c1,
                      T b2, T c2, T eps, T decay, int mode) {
  switch (mode) {
    case optim::kL2:
      return adam_range<T, optim::kL2>(p, m, v, g, lo, hi, alpha, b1, c1, b2, c2, eps, decay);
    case optim::kDecoupled:
      return adam_range<T, optim::kDecoupled>(p, m, v, g, lo, hi, alpha, b1, c1, b2, c2, eps,
                                              decay);
    default:
      return adam_range<T, optim::kNoDecay>(p, m, v, g, lo, hi, alpha, b1, c1, b2, c2, eps,
                                            decay);
  }
}

template <class T>
static void rmsprop_loop(T* p, T* sq, T* vel, const T* g, index_t lo, index_t hi, T lr, T rho,
                         T c_rho, T eps, T mu, bool momentum) {
  if (momentum) {
    for (index_t i = lo; i < hi; ++i)
      optim::rmsprop<T, true>(p[i], sq[i], vel[i], g[i], lr, rho, c_rho, eps, mu);
  } else {
    T unused = T(0);
    for (index_t i = lo; i < hi; ++i)
      optim::rmsprop<T, false>(p[i], sq[i], unused, g[i], lr, rho, c_rho, eps, mu);
  }
}

template <class T>
static void dropout_loop(T* __restrict y, std::uint8_t* __restrict mask, const T* __restrict x,
                         index_t lo, index_t hi, rng::Key key, std::uint32_t thr, T scale) {
  // A 32-bit counter in the loop (the upper index half is fixed): 64-bit lanes would halve the
  // vector width and need multiplies that only AVX-512DQ has.
  const std::uint32_t upper = static_cast<std::uint32_t>(static_cast<std::uint64_t>(lo) >> 32);
  const std::uint32_t base = static_cast<std::uint32_t>(lo);
  const std::uint32_t len = static_cast<std::uint32_t>(hi - lo);
  y += lo;
  x += lo;
  if (mask) {
    mask += lo;
    for (std::uint32_t j = 0; j < len; ++j) {
      const bool keep = rng::bits(key, base + j, upper) >= thr;
      mask[j] = keep ? 1 : 0;
      y[j] = x[j] * (keep ? scale : T(0));
    }
  } else {
    for (std::uint32_t j = 0; j < len; ++j) {
      const bool keep = rng::bits(key, base + j, upper) >= thr;
      y[j] = x[j] * (keep ? scale : T(0));
    }
  }
}

// Reductions keep kLanes independent partial sums (element i goes to lane i % kLanes), which the
// compiler can hold in vector registers without reassociating anything: the result is the same
// for every ISA up to FMA contraction, and the loop is not bound by one add's latency.
constexpr int kLanes = 16;

template <class T>
static double sum_squares_loop(const T* x, index_t lo, index_t hi) {
  double acc[kLanes] = {};
  index_t i = lo;
  for (; i + kLanes <= hi; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double a = double(x[i + l]);
      acc[l] += a * a;
    }
  double tail = 0.0;
  for (; i < hi; ++i) tail += double(x[i]) * double(x[i]);
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0] + tail;
}

template <class T>
static void abs_square_sums_loop(const T* w, index_t lo, index_t hi, double* out) {
  double a[kLanes] = {}, q[kLanes] = {};
  index_t i = lo;
  for (; i + kLanes <= hi; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double x = double(w[i + l]);
      a[l] += x < 0.0 ? -x : x;
      q[l] += x * x;
    }
  double ta = 0.0, tq = 0.0;
  for (; i < hi; ++i) {
    const double x = double(w[i]);
    ta += x < 0.0 ? -x : x;
    tq += x * x;
  }
  for (int s = kLanes / 2; s >= 1; s /= 2)
    for (int l = 0; l < s; ++l) {
      a[l] += a[l + s];
      q[l] += q[l + s];
    }
  out[0] = a[0] + ta;
  out[1] = q[0] + tq;
}

template <class T>
static void reg_grad_loop(T* g, const T* w, index_t lo, index_t hi, T a, T b) {
  for (index_t i = lo; i < hi; ++i) g[i] += a * lmath::sign0(w[i]) + b * w[i];
}

template <class T>
static constexpr NnLoops<T> make_loops() {
  return NnLoops<T>{&sgd_loop<T>,         &adam_loop<T>,           &rmsprop_loop<T>,
                    &dropout_loop<T>,     &sum_squares_loop<T>,    &abs_square_sums_loop<T>,
                    &reg_grad_loop<T>};
}
