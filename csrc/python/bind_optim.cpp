// Bindings of the optimizer family: fused in-place updates (outputs, i.e. the parameter and its
// state, first; then the gradient; then the hyper-parameters) and the reductions around them.
// Arrays are C-contiguous with equal shapes and dtypes (ops checked); the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "cpu/optim.h"
#include "python/arrays.h"

namespace fastnn {
namespace {

template <class T>
T* wptr(const py::array& a) {
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
T* wptr_or_null(const py::object& o) {
  return o.is_none() ? nullptr : wptr<T>(o.cast<py::array>());
}

template <class T>
const T* rptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}

template <class T>
void sgd_t(py::array p, py::object vel, py::array g, double lr, double momentum, bool nesterov,
           double wd) {
  T *P = wptr<T>(p), *V = wptr_or_null<T>(vel);
  const T* G = rptr<T>(g);
  index_t n = p.size();
  py::gil_scoped_release nogil;
  sgd_update<T>(P, V, G, n, lr, momentum, nesterov, wd);
}

template <class T>
void adam_t(py::array p, py::array m, py::array v, py::array g, double lr, double b1, double b2,
            double eps, std::int64_t step, double wd, bool decoupled) {
  T *P = wptr<T>(p), *M = wptr<T>(m), *V = wptr<T>(v);
  const T* G = rptr<T>(g);
  index_t n = p.size();
  py::gil_scoped_release nogil;
  adam_update<T>(P, M, V, G, n, lr, b1, b2, eps, step, wd, decoupled);
}

// Adam on every tensor of the lists in one call, each followed (with averages) by its moving
// average's update, the ema_update pass: a model of many small parameters (a Transformer has a
// few dozen) paid the Python call and checks per tensor, about 4 us each.
template <class T>
void adam_many_t(const py::sequence& ps, const py::sequence& ms, const py::sequence& vs,
                 const py::sequence& gs, const py::object& avgs, double lr, double b1, double b2,
                 double eps, std::int64_t step, double wd, bool decoupled, double ema_momentum) {
  struct Item {
    T *p, *m, *v, *avg;
    const T* g;
    index_t n;
  };
  const std::size_t count = ps.size();
  if (ms.size() != count || vs.size() != count || gs.size() != count)
    throw py::value_error("fastnn._C: adam_steps needs lists of one length");
  const bool ema = !avgs.is_none();
  py::sequence as;
  if (ema) {
    as = avgs.cast<py::sequence>();
    if (as.size() != count)
      throw py::value_error("fastnn._C: adam_steps needs lists of one length");
  }
  std::vector<Item> items;
  items.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const py::array p = ps[i].cast<py::array>();
    if (p.itemsize() != py::ssize_t(sizeof(T)))
      throw py::value_error("fastnn._C: adam_steps needs one dtype for all tensors");
    items.push_back(Item{wptr<T>(p), wptr<T>(ms[i].cast<py::array>()),
                         wptr<T>(vs[i].cast<py::array>()),
                         ema ? wptr<T>(as[i].cast<py::array>()) : nullptr,
                         rptr<T>(gs[i].cast<py::array>()), index_t(p.size())});
  }
  py::gil_scoped_release nogil;
  for (const Item& it : items) {
    if (it.n == 0) continue;
    adam_update<T>(it.p, it.m, it.v, it.g, it.n, lr, b1, b2, eps, step, wd, decoupled);
    // average += (1 - momentum) (param - average): ema_update's SGD-kernel form
    if (it.avg)
      sgd_update<T>(it.avg, nullptr, it.p, it.n, -(1.0 - ema_momentum), 0.0, false, -1.0);
  }
}

template <class T>
void rmsprop_t(py::array p, py::array sq, py::object vel, py::array g, double lr, double rho,
               double eps, double momentum) {
  T *P = wptr<T>(p), *S = wptr<T>(sq), *V = wptr_or_null<T>(vel);
  const T* G = rptr<T>(g);
  index_t n = p.size();
  py::gil_scoped_release nogil;
  rmsprop_update<T>(P, S, V, G, n, lr, rho, eps, momentum);
}

template <class T>
double sumsq_t(py::array x) {
  const T* X = rptr<T>(x);
  index_t n = x.size();
  py::gil_scoped_release nogil;
  return sum_squares<T>(X, n);
}

template <class T>
double reg_loss_t(py::array w, double l1, double l2) {
  const T* W = rptr<T>(w);
  index_t n = w.size();
  py::gil_scoped_release nogil;
  return regularizer_value<T>(W, n, l1, l2);
}

template <class T>
void reg_grad_t(py::array g, py::array w, double l1, double l2) {
  T* G = wptr<T>(g);
  const T* W = rptr<T>(w);
  index_t n = w.size();
  py::gil_scoped_release nogil;
  regularizer_add_grad<T>(G, W, n, l1, l2);
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step",
      [](py::array p, py::object vel, py::array g, double lr, double momentum, bool nesterov,
         double wd) {
        if (is_f32(p)) sgd_t<float>(p, vel, g, lr, momentum, nesterov, wd);
        else sgd_t<double>(p, vel, g, lr, momentum, nesterov, wd);
      },
      py::arg("param"), py::arg("velocity"), py::arg("grad"), py::arg("lr"),
      py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"),
      "One SGD step in place (PyTorch's formulation); velocity may be None without momentum.");
  m.def(
      "adam_step",
      [](py::array p, py::array mm, py::array v, py::array g, double lr, double b1, double b2,
         double eps, std::int64_t step, double wd, bool decoupled) {
        if (is_f32(p)) adam_t<float>(p, mm, v, g, lr, b1, b2, eps, step, wd, decoupled);
        else adam_t<double>(p, mm, v, g, lr, b1, b2, eps, step, wd, decoupled);
      },
      py::arg("param"), py::arg("m"), py::arg("v"), py::arg("grad"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("step"),
      py::arg("weight_decay"), py::arg("decoupled"),
      "One Adam (decoupled: AdamW) step in place, Keras's formulation; step is 1-based.");
  m.def(
      "adam_steps",
      [](py::sequence ps, py::sequence ms, py::sequence vs, py::sequence gs, py::object avgs,
         double lr, double b1, double b2, double eps, std::int64_t step, double wd,
         bool decoupled, double ema_momentum) {
        if (ps.size() == 0) return;
        if (is_f32(ps[0].cast<py::array>()))
          adam_many_t<float>(ps, ms, vs, gs, avgs, lr, b1, b2, eps, step, wd, decoupled,
                             ema_momentum);
        else
          adam_many_t<double>(ps, ms, vs, gs, avgs, lr, b1, b2, eps, step, wd, decoupled,
                              ema_momentum);
      },
      py::arg("params"), py::arg("ms"), py::arg("vs"), py::arg("grads"), py::arg("averages"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("step"),
      py::arg("weight_decay"), py::arg("decoupled"), py::arg("ema_momentum"),
      "adam_step on every tensor of the lists, each followed by its moving average's update "
      "(averages may be None); one dtype; arguments trusted: use fastnn.ops.adam_steps.");
  m.def(
      "rmsprop_step",
      [](py::array p, py::array sq, py::object vel, py::array g, double lr, double rho,
         double eps, double momentum) {
        if (is_f32(p)) rmsprop_t<float>(p, sq, vel, g, lr, rho, eps, momentum);
        else rmsprop_t<double>(p, sq, vel, g, lr, rho, eps, momentum);
      },
      py::arg("param"), py::arg("sq"), py::arg("velocity"), py::arg("grad"), py::arg("lr"),
      py::arg("rho"), py::arg("eps"), py::arg("momentum"),
      "One RMSprop step in place, Keras's formulation; velocity may be None without momentum.");
  m.def(
      "sum_squares",
      [](py::array x) { return is_f32(x) ? sumsq_t<float>(x) : sumsq_t<double>(x); },
      py::arg("x"), "sum(x**2), accumulated in double.");
  m.def(
      "regularizer_loss",
      [](py::array w, double l1, double l2) {
        return is_f32(w) ? reg_loss_t<float>(w, l1, l2) : reg_loss_t<double>(w, l1, l2);
      },
      py::arg("w"), py::arg("l1"), py::arg("l2"), "l1*sum|w| + l2*sum(w**2) in double.");
  m.def(
      "regularizer_grad",
      [](py::array g, py::array w, double l1, double l2) {
        if (is_f32(w)) reg_grad_t<float>(g, w, l1, l2);
        else reg_grad_t<double>(g, w, l1, l2);
      },
      py::arg("grad"), py::arg("w"), py::arg("l1"), py::arg("l2"),
      "grad += l1*sign(w) + 2*l2*w in place.");
}

}  // namespace fastnn
