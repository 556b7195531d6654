// AVX2 build of the convolution loops of csrc/cpu/conv2d.h: the Winograd transforms and the
// direct (depthwise) planes, compiled with -mavx2 -mfma only in this file and chosen at run time.
// 8 float lanes where the baseline build had 4, and the stride-2 tile columns gathered with
// shuffles instead of one load per element.
#include "cpu/conv2d.h"

namespace fastnn {
namespace conv_avx2 {
namespace {

template <class T>
void input(T* v, index_t sv, const T* r0, index_t pitch, index_t tw, T* tmp) {
  wino_input_loop<T>(v, sv, r0, pitch, tw, tmp);
}

template <class T>
void output(T* o, index_t so, const T* m, index_t sm, index_t cols, T bias) {
  wino_output_loop<T>(o, so, m, sm, cols, bias);
}

template <class T>
void grad(T* z, index_t sz, const T* d, index_t sd, index_t cols) {
  wino_grad_loop<T>(z, sz, d, sd, cols);
}

template <class T>
void direct_plane(T* y, const T* x, const T* w, T bias, const ConvGeom& g) {
  direct_plane_loop<T>(y, x, w, bias, g);
}

template <class T>
void direct_plane_adjoint(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  direct_plane_adjoint_loop<T>(dx, dy, w, g);
}

}  // namespace
}  // namespace conv_avx2

const ConvIsaLoops kConvLoopsAvx2 = {
    "avx2",
    {&conv_avx2::input<float>, &conv_avx2::output<float>, &conv_avx2::grad<float>,
     &conv_avx2::direct_plane<float>, &conv_avx2::direct_plane_adjoint<float>},
    {&conv_avx2::input<double>, &conv_avx2::output<double>, &conv_avx2::grad<double>,
     &conv_avx2::direct_plane<double>, &conv_avx2::direct_plane_adjoint<double>},
};

}  // namespace fastnn
