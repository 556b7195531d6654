// fastnn._C: the C++ kernels. One bind_<family>.cpp per op family registers its functions here.
#include <pybind11/pybind11.h>

#include "common/cpuid.h"
#include "common/threading.h"

namespace py = pybind11;

namespace fastnn {
void bind_gemm(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_nn_activations(py::module_& m);
void bind_losses(py::module_& m);
void bind_dropout(py::module_& m);
void bind_optim(py::module_& m);
}  // namespace fastnn

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn C++ kernels (use fastnn.ops; these functions trust their arguments)";
  m.attr("__version__") = FASTNN_VERSION;
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  m.def("isa", [] { return std::string(fastnn::isa_name(fastnn::active_isa())); },
        "The instruction set the kernels use now.");
  m.def("best_isa", [] { return std::string(fastnn::isa_name(fastnn::best_isa())); });
  m.def(
      "cpu_supports",
      [](const std::string& name) {
        for (auto isa : {fastnn::Isa::generic, fastnn::Isa::avx2, fastnn::Isa::avx512})
          if (name == fastnn::isa_name(isa)) return fastnn::cpu_supports(isa);
        return false;
      },
      py::arg("isa"));
  m.def(
      "set_isa",
      [](const std::string& name) {
        for (auto isa : {fastnn::Isa::generic, fastnn::Isa::avx2, fastnn::Isa::avx512})
          if (name == fastnn::isa_name(isa)) return fastnn::set_isa(isa);
        return false;
      },
      py::arg("isa"), "Force an ISA; returns False if this CPU cannot run it.");
  m.def("num_threads", &fastnn::num_threads);
  m.def("set_num_threads", &fastnn::set_num_threads, py::arg("n"));
  fastnn::bind_gemm(m);
  fastnn::bind_elementwise(m);
  fastnn::bind_nn_activations(m);
  fastnn::bind_losses(m);
  fastnn::bind_dropout(m);
  fastnn::bind_optim(m);
}
