#include "cpu/dropout.h"

#include "common/parallel.h"
#include "common/rng.h"
#include "common/threading.h"
#include "cpu/nn_dispatch.h"

namespace fastnn {
namespace {

// Chunks divide 2^32, so none straddles a change of the counter's upper half.
constexpr index_t kChunk = index_t(1) << 16;

}  // namespace

template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double rate,
                     std::uint64_t seed) {
  if (n == 0) return;
  const NnLoops<T>& k = nn_loops_for<T>();
  const rng::Key key = rng::key_from_seed(seed);
  const std::uint32_t thr = rng::drop_threshold(rate);
  const T scale = T(1.0 / (1.0 - rate));
  const index_t chunks = (n + kChunk - 1) / kChunk;
  const int nt = chunks > 1 ? threads_for(double(n) * 0.5) : 1;
  // The pool flushes denormals in every chunk: denormal inputs would make every multiply a
  // microcode assist.
  parallel_range(n, kChunk, nt, [&](index_t lo, index_t hi) {
    k.dropout(y, mask, x, lo, hi, key, thr, scale);
  });
}

template <class T>
void dropout_backward(T* dx, const std::uint8_t* mask, const T* dy, index_t n, double rate) {
  const T scale = T(1.0 / (1.0 - rate));
  const int nt = threads_for(double(n) * 0.25);
  parallel_range(n, nt > 1 ? (n + 4 * nt - 1) / (4 * nt) : n, nt, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) dx[i] = dy[i] * (mask[i] ? scale : T(0));
  });
}

template void dropout_forward<float>(float*, std::uint8_t*, const float*, index_t, double,
                                     std::uint64_t);
template void dropout_forward<double>(double*, std::uint8_t*, const double*, index_t, double,
                                      std::uint64_t);
template void dropout_backward<float>(float*, const std::uint8_t*, const float*, index_t, double);
template void dropout_backward<double>(double*, const std::uint8_t*, const double*, index_t,
                                       double);

}  // namespace fastnn
