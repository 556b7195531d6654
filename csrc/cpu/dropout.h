// Inverted dropout with a counter-based mask (common/rng.h): element i is kept when
// rng::bits(key(seed), i) >= rng::drop_threshold(rate), and kept values are scaled by 1/(1-rate).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// y = x * keep / (1 - rate); mask (optional) receives keep as 0/1 bytes. NaN in x stays NaN
// even where dropped (x * 0), as in the multiply form every framework uses.
template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double rate,
                     std::uint64_t seed);

// dx = dy * mask / (1 - rate).
template <class T>
void dropout_backward(T* dx, const std::uint8_t* mask, const T* dy, index_t n, double rate);

}  // namespace fastnn
