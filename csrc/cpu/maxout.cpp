#include "cpu/maxout.h"

#include "common/parallel.h"
#include "common/threading.h"

namespace fastnn {

template <class T>
void maxout_forward(T* y, std::int32_t* arg, const T* x, index_t rows, index_t units,
                    index_t pieces) {
  const index_t n = rows * units;
  const int nt = threads_for(double(n) * double(pieces));
  parallel_range(n, nt > 1 ? (n + 4 * nt - 1) / (4 * nt) : n, nt, [&](index_t lo, index_t hi) {
  for (index_t o = lo; o < hi; ++o) {
    const T* xs = x + o * pieces;
    T best = xs[0];
    std::int32_t k = 0;
    for (index_t p = 1; p < pieces; ++p) {
      T v = xs[p];
      // Take v when it is larger, or when it is the first NaN (best == best: best is no NaN).
      if (v > best || (v != v && best == best)) {
        best = v;
        k = static_cast<std::int32_t>(p);
      }
    }
    y[o] = best;
    if (arg) arg[o] = k;
  }
  });
}

template <class T>
void maxout_backward(T* dx, const std::int32_t* arg, const T* dy, index_t rows, index_t units,
                     index_t pieces) {
  const index_t n = rows * units;
  const int nt = threads_for(double(n) * double(pieces));
  parallel_range(n, nt > 1 ? (n + 4 * nt - 1) / (4 * nt) : n, nt, [&](index_t lo, index_t hi) {
    for (index_t o = lo; o < hi; ++o) {
      T* d = dx + o * pieces;
      for (index_t p = 0; p < pieces; ++p) d[p] = T(0);
      d[arg[o]] = dy[o];
    }
  });
}

template void maxout_forward<float>(float*, std::int32_t*, const float*, index_t, index_t,
                                    index_t);
template void maxout_forward<double>(double*, std::int32_t*, const double*, index_t, index_t,
                                     index_t);
template void maxout_backward<float>(float*, const std::int32_t*, const float*, index_t, index_t,
                                     index_t);
template void maxout_backward<double>(double*, const std::int32_t*, const double*, index_t,
                                      index_t, index_t);

}  // namespace fastnn
