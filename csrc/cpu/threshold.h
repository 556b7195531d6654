// The step function: 1 where x > value, else 0 (NaN gives 0, as the comparison is false).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

template <class T>
void threshold_forward(T* y, const T* x, index_t n, T value);

}  // namespace fastnn
