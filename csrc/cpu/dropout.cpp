#include "cpu/dropout.h"

#include "common/omp_compat.h"
#include "common/rng.h"
#include "common/threading.h"

namespace fastnn {
namespace {

// Chunks never straddle a multiple of 2^32, so the inner loop runs on a 32-bit counter (which
// the compiler vectorizes) with the upper index half fixed.
constexpr index_t kChunk = index_t(1) << 16;

template <class T>
void forward_chunk(T* y, std::uint8_t* mask, const T* x, index_t lo, index_t hi, rng::Key key,
                   std::uint32_t thr, T scale) {
  const std::uint32_t hi32 = static_cast<std::uint32_t>(static_cast<std::uint64_t>(lo) >> 32);
  const std::uint32_t base = static_cast<std::uint32_t>(lo);
  const std::uint32_t len = static_cast<std::uint32_t>(hi - lo);
  T* yc = y + lo;
  const T* xc = x + lo;
  if (mask) {
    std::uint8_t* mc = mask + lo;
    for (std::uint32_t j = 0; j < len; ++j) {
      const bool keep = rng::bits(key, base + j, hi32) >= thr;
      mc[j] = keep ? 1 : 0;
      yc[j] = xc[j] * (keep ? scale : T(0));
    }
  } else {
    for (std::uint32_t j = 0; j < len; ++j) {
      const bool keep = rng::bits(key, base + j, hi32) >= thr;
      yc[j] = xc[j] * (keep ? scale : T(0));
    }
  }
}

inline int dropout_threads(index_t n, double per_elem) {
  return threads_for(double(n) * per_elem);
}

}  // namespace

template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double rate,
                     std::uint64_t seed) {
  if (n == 0) return;
  const rng::Key key = rng::key_from_seed(seed);
  const std::uint32_t thr = rng::drop_threshold(rate);
  const T scale = T(1.0 / (1.0 - rate));
  const index_t chunks = (n + kChunk - 1) / kChunk;
  const int nt = chunks > 1 ? dropout_threads(n, 12.0) : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t c = 0; c < chunks; ++c) {
    const index_t lo = c * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;
    forward_chunk(y, mask, x, lo, hi, key, thr, scale);
  }
}

template <class T>
void dropout_backward(T* dx, const std::uint8_t* mask, const T* dy, index_t n, double rate) {
  const T scale = T(1.0 / (1.0 - rate));
  const int nt = dropout_threads(n, 2.0);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (mask[i] ? scale : T(0));
}

template void dropout_forward<float>(float*, std::uint8_t*, const float*, index_t, double,
                                     std::uint64_t);
template void dropout_forward<double>(double*, std::uint8_t*, const double*, index_t, double,
                                      std::uint64_t);
template void dropout_backward<float>(float*, const std::uint8_t*, const float*, index_t, double);
template void dropout_backward<double>(double*, const std::uint8_t*, const double*, index_t,
                                       double);

}  // namespace fastnn
