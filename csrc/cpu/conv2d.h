// 2-D convolution (cross-correlation, as PyTorch's conv2d) on NCHW images: forward, and the
// gradients of the input and of the weight. All arrays are C-contiguous; the ops layer checked
// every size, so a kernel never sees an empty dimension or a window that cannot fit.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// The geometry of one call. x (n, ci, h, w); w (co, ci/groups, kh, kw); y (n, co, oh, ow).
// (ph, pw) is the top/left padding; the bottom/right padding is whatever makes (oh, ow) fit, so
// windows may reach past the bottom/right edge (zeros there) and input rows/columns past the last
// window are never read (their input gradient is 0: the transposed convolution's output padding).
struct ConvGeom {
  index_t n = 0, ci = 0, h = 0, w = 0;
  index_t co = 0, oh = 0, ow = 0;
  index_t kh = 1, kw = 1;
  index_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  index_t groups = 1;
};

// y := conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g);

// dx := the gradient of sum(y * dy) with respect to x (all of dx is written).
template <class T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvGeom& g);

// dw := the weight gradient (all of it is written); db (may be null) := dy summed over n, oh, ow.
template <class T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g);

}  // namespace fastnn
