// Bindings of the recurrent family: lstm/gru/rnn _forward and _backward over whole batch-first
// sequences. Signatures: outputs first, then saved state (gates, y), then inputs, then parameters,
// then lengths (DESIGN.md); arrays are C-contiguous with the shapes of csrc/cpu/rnn.h, already
// checked by fastnn.ops (biases are always arrays there; gates may be None in inference). The GIL
// is released around the work. vmath_sigmoid/vmath_tanh expose the active ISA's float32 vector
// nonlinearities to the tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/rnn.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
const T* cd(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* md(py::array& a) { return static_cast<T*>(a.mutable_data()); }
const std::int64_t* lens(const py::array& a) { return static_cast<const std::int64_t*>(a.data()); }

RnnDims dims(const py::array& x, const py::array& w_hh) {
  RnnDims d;
  d.B = x.shape(0); d.T = x.shape(1); d.I = x.shape(2); d.H = w_hh.shape(1);
  return d;
}

double work(const RnnDims& d, int gates) {
  return double(d.B) * double(d.T) * gates * double(d.H) * double(d.I + d.H);
}

// f(T{}) with T the element type of the call (float32 or float64: ops has checked they agree).
template <class F>
void by_dtype(const py::array& x, F&& f) {
  if (is_f32(x))
    f(float{});
  else
    f(double{});
}

}  // namespace

void bind_rnn(py::module_& m) {
  m.def(
      "lstm_forward",
      [](py::array y, py::array h_n, py::array c_n, py::object gates, py::array x, py::array h0,
         py::array c0, py::array w_ih, py::array w_hh, py::array b_ih, py::array b_hh,
         py::array lengths) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          T* g = ptr_or_null<T>(gates);
          GilRelease nogil(work(d, 4));
          lstm_forward<T>(md<T>(y), md<T>(h_n), md<T>(c_n), g, cd<T>(x), cd<T>(h0), cd<T>(c0),
                          cd<T>(w_ih), cd<T>(w_hh), cd<T>(b_ih), cd<T>(b_hh), lens(lengths), d);
        });
      },
      py::arg("y"), py::arg("h_n"), py::arg("c_n"), py::arg("gates"), py::arg("x"),
      py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
      py::arg("b_hh"), py::arg("lengths"),
      "LSTM over batch-first sequences: y, h_n, c_n and (unless None) the gates [i f g o c] of "
      "every step. Arguments are trusted: use fastnn.ops.lstm.");
  m.def(
      "lstm_backward",
      [](py::array dx, py::array dh0, py::array dc0, py::array dw_ih, py::array dw_hh,
         py::array db_ih, py::array db_hh, py::array gates, py::array y, py::array dy,
         py::array dh_n, py::array dc_n, py::array x, py::array h0, py::array c0,
         py::array w_ih, py::array w_hh, py::array lengths) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          GilRelease nogil(work(d, 4));
          lstm_backward<T>(md<T>(dx), md<T>(dh0), md<T>(dc0), md<T>(dw_ih), md<T>(dw_hh),
                           md<T>(db_ih), md<T>(db_hh), cd<T>(gates), cd<T>(y), cd<T>(dy),
                           cd<T>(dh_n), cd<T>(dc_n), cd<T>(x), cd<T>(h0), cd<T>(c0),
                           cd<T>(w_ih), cd<T>(w_hh), lens(lengths), d);
        });
      },
      py::arg("dx"), py::arg("dh0"), py::arg("dc0"), py::arg("dw_ih"), py::arg("dw_hh"),
      py::arg("db_ih"), py::arg("db_hh"), py::arg("gates"), py::arg("y"), py::arg("dy"),
      py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("h0"), py::arg("c0"),
      py::arg("w_ih"), py::arg("w_hh"), py::arg("lengths"),
      "LSTM backward through time from the saved gates and y.");
  m.def(
      "gru_forward",
      [](py::array y, py::array h_n, py::object gates, py::array x, py::array h0,
         py::array w_ih, py::array w_hh, py::array b_ih, py::array b_hh, py::array lengths) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          T* g = ptr_or_null<T>(gates);
          GilRelease nogil(work(d, 3));
          gru_forward<T>(md<T>(y), md<T>(h_n), g, cd<T>(x), cd<T>(h0), cd<T>(w_ih), cd<T>(w_hh),
                         cd<T>(b_ih), cd<T>(b_hh), lens(lengths), d);
        });
      },
      py::arg("y"), py::arg("h_n"), py::arg("gates"), py::arg("x"), py::arg("h0"),
      py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("lengths"),
      "GRU over batch-first sequences: y, h_n and (unless None) the gates [r z n U_n h + b_hn].");
  m.def(
      "gru_backward",
      [](py::array dx, py::array dh0, py::array dw_ih, py::array dw_hh, py::array db_ih,
         py::array db_hh, py::array gates, py::array y, py::array dy, py::array dh_n,
         py::array x, py::array h0, py::array w_ih, py::array w_hh, py::array lengths) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          GilRelease nogil(work(d, 3));
          gru_backward<T>(md<T>(dx), md<T>(dh0), md<T>(dw_ih), md<T>(dw_hh), md<T>(db_ih),
                          md<T>(db_hh), cd<T>(gates), cd<T>(y), cd<T>(dy), cd<T>(dh_n), cd<T>(x),
                          cd<T>(h0), cd<T>(w_ih), cd<T>(w_hh), lens(lengths), d);
        });
      },
      py::arg("dx"), py::arg("dh0"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"),
      py::arg("db_hh"), py::arg("gates"), py::arg("y"), py::arg("dy"), py::arg("dh_n"),
      py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("lengths"),
      "GRU backward through time from the saved gates and y.");
  m.def(
      "rnn_forward",
      [](py::array y, py::array h_n, py::array x, py::array h0, py::array w_ih, py::array w_hh,
         py::array b_ih, py::array b_hh, py::array lengths, bool relu) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          GilRelease nogil(work(d, 1));
          rnn_forward<T>(md<T>(y), md<T>(h_n), cd<T>(x), cd<T>(h0), cd<T>(w_ih), cd<T>(w_hh),
                         cd<T>(b_ih), cd<T>(b_hh), lens(lengths), d, relu);
        });
      },
      py::arg("y"), py::arg("h_n"), py::arg("x"), py::arg("h0"), py::arg("w_ih"),
      py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("lengths"), py::arg("relu"),
      "Elman RNN (tanh, or relu) over batch-first sequences: y, h_n.");
  m.def(
      "rnn_backward",
      [](py::array dx, py::array dh0, py::array dw_ih, py::array dw_hh, py::array db_ih,
         py::array db_hh, py::array y, py::array dy, py::array dh_n, py::array x, py::array h0,
         py::array w_ih, py::array w_hh, py::array lengths, bool relu) {
        const RnnDims d = dims(x, w_hh);
        by_dtype(x, [&](auto z) {
          using T = decltype(z);
          GilRelease nogil(work(d, 1));
          rnn_backward<T>(md<T>(dx), md<T>(dh0), md<T>(dw_ih), md<T>(dw_hh), md<T>(db_ih),
                          md<T>(db_hh), cd<T>(y), cd<T>(dy), cd<T>(dh_n), cd<T>(x), cd<T>(h0),
                          cd<T>(w_ih), cd<T>(w_hh), lens(lengths), d, relu);
        });
      },
      py::arg("dx"), py::arg("dh0"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"),
      py::arg("db_hh"), py::arg("y"), py::arg("dy"), py::arg("dh_n"), py::arg("x"),
      py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("lengths"), py::arg("relu"),
      "Elman RNN backward through time from y.");
  m.def(
      "vmath_sigmoid",
      [](py::array_t<float, py::array::c_style> y, py::array_t<float, py::array::c_style> x) {
        if (y.size() != x.size()) throw py::value_error("vmath_sigmoid: sizes differ");
        rnn_rows().f32.sigmoid(y.mutable_data(), x.data(), x.size());
      },
      py::arg("y"), py::arg("x"), "y := sigmoid(x), the active ISA's float32 vector code.");
  m.def(
      "vmath_tanh",
      [](py::array_t<float, py::array::c_style> y, py::array_t<float, py::array::c_style> x) {
        if (y.size() != x.size()) throw py::value_error("vmath_tanh: sizes differ");
        rnn_rows().f32.tanh(y.mutable_data(), x.data(), x.size());
      },
      py::arg("y"), py::arg("x"), "y := tanh(x), the active ISA's float32 vector code.");
}

}  // namespace fastnn
