// fastnn._C: the C++ kernels. One bind_<family>.cpp per op family registers its functions here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <vector>

#include "common/cpuid.h"
#include "common/host_cache.h"
#include "common/parallel.h"
#include "common/threading.h"

namespace py = pybind11;

namespace fastnn {
void bind_gemm(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_nn_activations(py::module_& m);
void bind_losses(py::module_& m);
void bind_dropout(py::module_& m);
void bind_optim(py::module_& m);
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_rnn(py::module_& m);
void bind_attention(py::module_& m);
void bind_rbm(py::module_& m);
void bind_precision(py::module_& m);
}  // namespace fastnn

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn C++ kernels (use fastnn.ops; these functions trust their arguments)";
  m.attr("__version__") = FASTNN_VERSION;
  m.attr("threading") = "fastnn pool";  // common/parallel.h: no OpenMP runtime is linked
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
  // Uninitialised uint8 array of nbytes from the host cache (common/host_cache.h): its block goes
  // back to the cache when the array and every view of it are gone.
  m.def(
      "host_empty",
      [](std::size_t nbytes) {
        std::size_t granted = 0;
        void* p = fastnn::host_cache_take(nbytes, &granted);
        auto* block = new std::pair<void*, std::size_t>(p, granted);
        py::capsule owner(block, [](void* b) {
          auto* blk = static_cast<std::pair<void*, std::size_t>*>(b);
          fastnn::host_cache_give(blk->first, blk->second);
          delete blk;
        });
        return py::array_t<std::uint8_t>({py::ssize_t(nbytes)}, {py::ssize_t(1)},
                                         static_cast<std::uint8_t*>(p), owner);
      },
      py::arg("nbytes"));
  m.def("host_cache_bytes", &fastnn::host_cache_bytes, "Bytes held in cached free blocks.");
  m.def("host_cache_limit", &fastnn::host_cache_limit);
  m.def("host_cache_release", &fastnn::host_cache_release, "Frees every cached block.");
  m.def("set_num_threads", &fastnn::set_num_threads, py::arg("n"));
  m.def("pool_workers", &fastnn::pool_workers, "Worker threads alive in the pool.");
  // Runtime self-check for the tests: runs a job of n_chunks chunks that each busy-wait
  // `chunk_us` microseconds and returns, per chunk, how many times it ran and on which slot.
  m.def(
      "_parallel_probe",
      [](std::int64_t n_chunks, int nthreads, bool hold_workers, double chunk_us) {
        std::vector<int> runs(static_cast<std::size_t>(n_chunks), 0);
        std::vector<int> slots(static_cast<std::size_t>(n_chunks), -1);
        {
          py::gil_scoped_release nogil;
          fastnn::testing::hold_workers(hold_workers);
          fastnn::parallel_for(n_chunks, nthreads, [&](std::int64_t c, int slot) {
            const auto t0 = std::chrono::steady_clock::now();
            while (std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                       .count() < chunk_us) {
            }
            __atomic_add_fetch(&runs[static_cast<std::size_t>(c)], 1, __ATOMIC_RELAXED);
            slots[static_cast<std::size_t>(c)] = slot;
          });
          fastnn::testing::hold_workers(false);
        }
        return py::make_tuple(runs, slots);
      },
      py::arg("n_chunks"), py::arg("nthreads"), py::arg("hold_workers") = false,
      py::arg("chunk_us") = 0.0);
  // Runtime self-check of parallel_phases: every part busy-waits `part_us`; returns, per
  // (phase, part), how many times it ran, and its start and end on one global sequence counter.
  m.def(
      "_phases_probe",
      [](int phases, int parts, int nthreads, bool hold_workers, double part_us) {
        const std::size_t n = static_cast<std::size_t>(phases > 0 && parts > 0 ? phases * parts : 0);
        std::vector<int> runs(n, 0), start(n, -1), end(n, -1);
        int seq = 0;
        {
          py::gil_scoped_release nogil;
          fastnn::testing::hold_workers(hold_workers);
          fastnn::parallel_phases(phases, parts, nthreads, [&](int phase, int part, int) {
            const std::size_t i = static_cast<std::size_t>(phase * parts + part);
            start[i] = __atomic_fetch_add(&seq, 1, __ATOMIC_ACQ_REL);
            const auto t0 = std::chrono::steady_clock::now();
            while (std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                       .count() < part_us) {
            }
            __atomic_add_fetch(&runs[i], 1, __ATOMIC_RELAXED);
            end[i] = __atomic_fetch_add(&seq, 1, __ATOMIC_ACQ_REL);
          });
          fastnn::testing::hold_workers(false);
        }
        return py::make_tuple(runs, start, end);
      },
      py::arg("phases"), py::arg("parts"), py::arg("nthreads"), py::arg("hold_workers") = false,
      py::arg("part_us") = 0.0);
  // While set, pool workers claim no chunk (testing::hold_workers): a kernel must then complete
  // on its calling thread alone.
  m.def("_hold_workers", &fastnn::testing::hold_workers, py::arg("hold"));
  m.def(
      "_wake_latency_us",
      [] {
        py::gil_scoped_release nogil;
        return fastnn::testing::wake_latency_us();
      },
      "One sample: microseconds from waking a sleeping thread to its running.");
  fastnn::bind_gemm(m);
  fastnn::bind_elementwise(m);
  fastnn::bind_nn_activations(m);
  fastnn::bind_losses(m);
  fastnn::bind_dropout(m);
  fastnn::bind_optim(m);
  fastnn::bind_conv(m);
  fastnn::bind_pool(m);
  fastnn::bind_rnn(m);
  fastnn::bind_attention(m);
  fastnn::bind_rbm(m);
  fastnn::bind_precision(m);
}
