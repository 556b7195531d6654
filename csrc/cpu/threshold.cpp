#include "cpu/threshold.h"

namespace fastnn {

template <class T>
void threshold_forward(T* y, const T* x, index_t n, T value) {
  for (index_t i = 0; i < n; ++i) y[i] = x[i] > value ? T(1) : T(0);
}

template void threshold_forward<float>(float*, const float*, index_t, float);
template void threshold_forward<double>(double*, const double*, index_t, double);

}  // namespace fastnn
