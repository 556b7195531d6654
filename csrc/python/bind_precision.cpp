// Bindings of the float32 matmul precision (cpu/gemm/bf16.h): the level, and which bfloat16
// kernel runs ("medium") with a testing hook to force one. fastnn/precision.py is the public API.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cpu/gemm/bf16.h"

namespace py = pybind11;

namespace fastnn {

void bind_precision(py::module_& m) {
  m.def("set_matmul_precision", [](int level) { set_matmul_precision(level); }, py::arg("level"),
        "0 highest, 1 high, 2 medium (bfloat16 products where a kernel exists).");
  m.def("matmul_precision", [] { return matmul_precision(); });
  m.def("bf16_kernel", [] { return std::string(bf16_kernel_name(bf16_kernel())); },
        "The bfloat16 kernel \"medium\" uses: amx, avx512_bf16 or none.");
  m.def("bf16_kernels", [] {
    std::vector<std::string> out;
    for (auto k : {Bf16Kernel::amx, Bf16Kernel::avx512_bf16})
      if (bf16_supported(k)) out.emplace_back(bf16_kernel_name(k));
    return out;
  }, "The bfloat16 kernels this CPU and build support, best first.");
  m.def("set_bf16_kernel", [](const std::string& name) {
    for (auto k : {Bf16Kernel::amx, Bf16Kernel::avx512_bf16, Bf16Kernel::none})
      if (name == bf16_kernel_name(k)) return set_bf16_kernel(k);
    return false;
  }, py::arg("name"), "Force a bfloat16 kernel (tests); False when unsupported.");
}

}  // namespace fastnn
