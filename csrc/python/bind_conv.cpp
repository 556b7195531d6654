// Bindings of the convolution family: conv2d_forward, conv2d_backward_data,
// conv2d_backward_weight, and conv2d_forward_maxpool2 / conv2d_backward_weight_unpool2 (fused
// with a 2x2 max pooling).
// Signatures: outputs first, then inputs, then parameters (DESIGN.md); arrays are C-contiguous
// NCHW, already checked by fastnn.ops. The GIL is released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cpu/conv2d.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

// The geometry from the shapes of the input-side array (n, ci, h, w) and the weight
// (co, ci / groups, kh, kw), an output of oh x ow, plus the scalar parameters: for the fused
// conv/pool calls, whose convolution output is never an array.
ConvGeom geom_sized(const py::array& in, const py::array& w, index_t oh, index_t ow, index_t sh,
                    index_t sw, index_t ph, index_t pw, index_t dil_h, index_t dil_w,
                    index_t groups) {
  ConvGeom g;
  g.n = in.shape(0); g.ci = in.shape(1); g.h = in.shape(2); g.w = in.shape(3);
  g.co = w.shape(0); g.oh = oh; g.ow = ow;
  g.kh = w.shape(2); g.kw = w.shape(3);
  g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dil_h; g.dw = dil_w;
  g.groups = groups;
  return g;
}

// The same with the output-side array (n, co, oh, ow) giving co and the output size.
ConvGeom geom(const py::array& in, const py::array& w, const py::array& out, index_t sh,
              index_t sw, index_t ph, index_t pw, index_t dil_h, index_t dil_w, index_t groups) {
  ConvGeom g = geom_sized(in, w, out.shape(2), out.shape(3), sh, sw, ph, pw, dil_h, dil_w, groups);
  g.co = out.shape(1);
  return g;
}

double macs(const ConvGeom& g) {
  return double(g.n) * double(g.co) * double(g.oh) * double(g.ow) * double(g.ci / g.groups) *
         double(g.kh) * double(g.kw);
}

template <class T>
const T* cdata(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mdata(py::array& a) { return static_cast<T*>(a.mutable_data()); }

template <class T>
void forward_t(py::array y, py::array x, py::array w, py::object b, const ConvGeom& g) {
  const T* bias = cptr_or_null<T>(b);
  GilRelease nogil(macs(g));
  conv2d_forward<T>(mdata<T>(y), cdata<T>(x), cdata<T>(w), bias, g);
}

template <class T>
void backward_data_t(py::array dx, py::array dy, py::array w, const ConvGeom& g) {
  GilRelease nogil(macs(g));
  conv2d_backward_data<T>(mdata<T>(dx), cdata<T>(dy), cdata<T>(w), g);
}

template <class T>
void backward_weight_t(py::array dw, py::object db, py::array dy, py::array x,
                       const ConvGeom& g) {
  T* dbias = ptr_or_null<T>(db);
  GilRelease nogil(macs(g));
  conv2d_backward_weight<T>(mdata<T>(dw), dbias, cdata<T>(dy), cdata<T>(x), g);
}

template <class T>
bool forward_maxpool2_t(py::array yp, py::array am, py::array x, py::array w, py::object b,
                        const ConvGeom& g) {
  const T* bias = cptr_or_null<T>(b);
  GilRelease nogil(macs(g));
  return conv2d_forward_maxpool2<T>(mdata<T>(yp), static_cast<std::int64_t*>(am.mutable_data()),
                                    cdata<T>(x), cdata<T>(w), bias, g);
}

template <class T>
bool backward_weight_unpool2_t(py::array dw, py::object db, py::array am, py::array dyp,
                               py::object gate, py::array x, const ConvGeom& g) {
  T* dbias = ptr_or_null<T>(db);
  const T* gt = cptr_or_null<T>(gate);
  GilRelease nogil(macs(g));
  return conv2d_backward_weight_unpool2<T>(mdata<T>(dw), dbias,
                                           static_cast<const std::int64_t*>(am.data()),
                                           cdata<T>(dyp), gt, cdata<T>(x), g);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def(
      "conv2d_forward",
      [](py::array y, py::array x, py::array w, py::object b, index_t sh, index_t sw, index_t ph,
         index_t pw, index_t dil_h, index_t dil_w, index_t groups, int act, double act_param) {
        ConvGeom g = geom(x, w, y, sh, sw, ph, pw, dil_h, dil_w, groups);
        g.act = act;
        g.act_param = act_param;
        if (is_f32(y)) forward_t<float>(y, x, w, b, g);
        else forward_t<double>(y, x, w, b, g);
      },
      py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      py::arg("act") = 0, py::arg("act_param") = 0.0,
      "y := act(conv2d(x, w) + b) (b may be None; act an activation code, 0 for none); (ph, pw) "
      "is the top/left padding, y's shape sets the rest. Arguments are trusted: use "
      "fastnn.ops.conv2d.");
  m.def(
      "conv2d_forward_maxpool2",
      [](py::array yp, py::array argmax, py::array x, py::array w, py::object b, index_t sh,
         index_t sw, index_t ph, index_t pw, index_t dil_h, index_t dil_w, index_t groups,
         int act, double act_param, index_t oh, index_t ow) {
        ConvGeom g = geom_sized(x, w, oh, ow, sh, sw, ph, pw, dil_h, dil_w, groups);
        g.act = act;
        g.act_param = act_param;
        if (is_f32(yp)) return forward_maxpool2_t<float>(yp, argmax, x, w, b, g);
        return forward_maxpool2_t<double>(yp, argmax, x, w, b, g);
      },
      py::arg("yp"), py::arg("argmax"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("sh"),
      py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"),
      py::arg("groups"), py::arg("act"), py::arg("act_param"), py::arg("oh"), py::arg("ow"),
      "yp, argmax := max_pool2d(act(conv2d(x, w) + b), 2) for a conv output of oh x ow, "
      "without writing that output; False (nothing written) where no fused path serves the "
      "shape. Arguments are trusted: use fastnn.ops.conv2d_max_pool2d_forward.");
  m.def(
      "conv2d_backward_weight_unpool2",
      [](py::array dw, py::object db, py::array argmax, py::array dyp, py::object gate,
         py::array x, index_t sh, index_t sw, index_t ph, index_t pw, index_t dil_h,
         index_t dil_w, index_t groups, index_t oh, index_t ow) {
        const ConvGeom g = geom_sized(x, dw, oh, ow, sh, sw, ph, pw, dil_h, dil_w, groups);
        if (is_f32(dw)) return backward_weight_unpool2_t<float>(dw, db, argmax, dyp, gate, x, g);
        return backward_weight_unpool2_t<double>(dw, db, argmax, dyp, gate, x, g);
      },
      py::arg("dw"), py::arg("db"), py::arg("argmax"), py::arg("dyp"), py::arg("gate"),
      py::arg("x"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dil_h"),
      py::arg("dil_w"), py::arg("groups"), py::arg("oh"), py::arg("ow"),
      "dw, db (or None) := the weight gradient of conv2d for the pre-pool gradient "
      "max_pool2d_backward(argmax, dyp, gate) of a 2x2-pooled conv output of oh x ow (gate: "
      "None, or the pooled output for a relu), without writing that gradient; False (nothing "
      "written) where no fused path serves the shape. Arguments are trusted: use "
      "fastnn.ops.conv2d_max_pool2d_backward.");
  m.def(
      "conv2d_backward_data",
      [](py::array dx, py::array dy, py::array w, index_t sh, index_t sw, index_t ph, index_t pw,
         index_t dil_h, index_t dil_w, index_t groups) {
        const ConvGeom g = geom(dx, w, dy, sh, sw, ph, pw, dil_h, dil_w, groups);
        if (is_f32(dx)) backward_data_t<float>(dx, dy, w, g);
        else backward_data_t<double>(dx, dy, w, g);
      },
      py::arg("dx"), py::arg("dy"), py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
      py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      "dx := the input gradient of conv2d given dy (all of dx is written).");
  m.def(
      "conv2d_backward_weight",
      [](py::array dw, py::object db, py::array dy, py::array x, index_t sh, index_t sw,
         index_t ph, index_t pw, index_t dil_h, index_t dil_w, index_t groups) {
        const ConvGeom g = geom(x, dw, dy, sh, sw, ph, pw, dil_h, dil_w, groups);
        if (is_f32(dw)) backward_weight_t<float>(dw, db, dy, x, g);
        else backward_weight_t<double>(dw, db, dy, x, g);
      },
      py::arg("dw"), py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      "dw := the weight gradient of conv2d, db (or None) := dy summed over (n, oh, ow).");
}

}  // namespace fastnn
