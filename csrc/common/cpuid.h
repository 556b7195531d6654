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

// bfloat16 dot products: AVX512_BF16 (with AVX-512), and AMX tiles with bf16 (CPU and OS state;
// Linux also hands a process the tile data only on request, which its user asks for).
bool cpu_has_avx512_bf16();
bool cpu_has_amx_bf16();

}  // namespace fastnn
