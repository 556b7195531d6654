// Maxout: unit u of a row is the largest of its `pieces` consecutive inputs.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// x: (rows, units*pieces) contiguous; y, arg: (rows, units). arg receives the winning piece
// (0 <= arg < pieces; the first one on ties; a NaN piece wins, so NaN propagates).
template <class T>
void maxout_forward(T* y, std::int32_t* arg, const T* x, index_t rows, index_t units,
                    index_t pieces);

// dx: (rows, units*pieces): dy routed to the winning piece, zero elsewhere.
template <class T>
void maxout_backward(T* dx, const std::int32_t* arg, const T* dy, index_t rows, index_t units,
                     index_t pieces);

}  // namespace fastnn
