// Bindings of the pooling family: max_pool2d_forward/backward, avg_pool2d_forward/backward.
// Signatures: outputs first, then saved state (argmax), then inputs, then parameters
// (DESIGN.md); arrays are C-contiguous NCHW, already checked by fastnn.ops. The GIL is released
// around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/pool.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

PoolGeom geom(const py::array& in, const py::array& out, index_t kh, index_t kw, index_t sh,
              index_t sw, index_t ph, index_t pw) {
  PoolGeom g;
  g.planes = in.shape(0) * in.shape(1);
  g.h = in.shape(2); g.w = in.shape(3);
  g.oh = out.shape(2); g.ow = out.shape(3);
  g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
  return g;
}

double cells(const PoolGeom& g) {
  return double(g.planes) * (double(g.oh) * double(g.ow) * double(g.kh) * double(g.kw) +
                             double(g.h) * double(g.w));
}

template <class T>
const T* cdata(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mdata(py::array& a) { return static_cast<T*>(a.mutable_data()); }

}  // namespace

void bind_pool(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](py::array y, py::array argmax, py::array x, index_t kh, index_t kw, index_t sh,
         index_t sw, index_t ph, index_t pw) {
        const PoolGeom g = geom(x, y, kh, kw, sh, sw, ph, pw);
        auto* am = static_cast<std::int64_t*>(argmax.mutable_data());
        const bool f32 = is_f32(y);
        GilRelease nogil(cells(g));
        if (f32) max_pool2d_forward<float>(mdata<float>(y), am, cdata<float>(x), g);
        else max_pool2d_forward<double>(mdata<double>(y), am, cdata<double>(x), g);
      },
      py::arg("y"), py::arg("argmax"), py::arg("x"), py::arg("kh"), py::arg("kw"),
      py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
      "y := window maxima (padding is -inf, NaN wins), argmax (int64) := their flat index "
      "row*W + col into the input plane. Arguments are trusted: use fastnn.ops.max_pool2d.");
  m.def(
      "max_pool2d_backward",
      [](py::array dx, py::array argmax, py::array dy, py::object gate) {
        PoolGeom g;
        g.planes = dx.shape(0) * dx.shape(1);
        g.h = dx.shape(2); g.w = dx.shape(3);
        g.oh = dy.shape(2); g.ow = dy.shape(3);
        const auto* am = static_cast<const std::int64_t*>(argmax.data());
        const bool f32 = is_f32(dx);
        py::array ga;
        if (!gate.is_none()) ga = gate.cast<py::array>();
        const void* gp = gate.is_none() ? nullptr : ga.data();
        GilRelease nogil(double(g.planes) * double(g.h * g.w + g.oh * g.ow));
        if (f32) {
          max_pool2d_backward<float>(mdata<float>(dx), am, cdata<float>(dy),
                                     static_cast<const float*>(gp), g);
        } else {
          max_pool2d_backward<double>(mdata<double>(dx), am, cdata<double>(dy),
                                      static_cast<const double*>(gp), g);
        }
      },
      py::arg("dx"), py::arg("argmax"), py::arg("dy"), py::arg("gate") = py::none(),
      "dx := 0, then each dy element added at its argmax; with a gate (the pooled output, "
      "dy's shape) only where gate > 0: the gradient through a relu before the pooling.");
  m.def(
      "avg_pool2d_forward",
      [](py::array y, py::array x, index_t kh, index_t kw, index_t sh, index_t sw, index_t ph,
         index_t pw, bool count_include_pad) {
        const PoolGeom g = geom(x, y, kh, kw, sh, sw, ph, pw);
        const bool f32 = is_f32(y);
        GilRelease nogil(cells(g));
        if (f32) avg_pool2d_forward<float>(mdata<float>(y), cdata<float>(x), g, count_include_pad);
        else avg_pool2d_forward<double>(mdata<double>(y), cdata<double>(x), g, count_include_pad);
      },
      py::arg("y"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"),
      "y := window means over the zero-padded input; the divisor counts the padding or not.");
  m.def(
      "avg_pool2d_backward",
      [](py::array dx, py::array dy, index_t kh, index_t kw, index_t sh, index_t sw, index_t ph,
         index_t pw, bool count_include_pad) {
        const PoolGeom g = geom(dx, dy, kh, kw, sh, sw, ph, pw);
        const bool f32 = is_f32(dx);
        GilRelease nogil(cells(g));
        if (f32) avg_pool2d_backward<float>(mdata<float>(dx), cdata<float>(dy), g, count_include_pad);
        else avg_pool2d_backward<double>(mdata<double>(dx), cdata<double>(dy), g, count_include_pad);
      },
      py::arg("dx"), py::arg("dy"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"),
      "dx := 0, then each dy element divided by its window's divisor and spread over the "
      "window's cells inside the image.");
}

}  // namespace fastnn
