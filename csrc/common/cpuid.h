// Which instruction sets this CPU (and OS) supports, and which one the kernels use.
#pragma once

namespace fastnn {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool cpu_supports(Isa isa);  // hardware and OS (saved register state) both allow it
Isa best_isa();              // the best supported ISA this build has kernels for
// The ISA in use: FASTNN_ISA (generic|avx2|avx512) if set and supported, else best_isa().
Isa active_isa();
// Force an ISA (tests, benchmarks). Returns false (and changes nothing) if unsupported.
bool set_isa(Isa isa);

}  // namespace fastnn
