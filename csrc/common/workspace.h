// Grow-only, 64-byte aligned scratch buffers per calling thread, one per slot. Packing buffers and
// temporaries are reused across calls, so a training step never pays for malloc/mmap and the page
// faults behind them. A slot is owned by one kernel family at a time: a kernel that calls another
// (linear -> gemm) uses a different slot from it.
#pragma once
#include <cstddef>

namespace fastnn {

enum ScratchSlot : int {
  kScratchGemm = 0,    // gemm packing buffers
  kScratchLinear = 1,  // linear backward: the activation-scaled gradient
  kScratchOp = 2,      // any other op family (not calling gemm while it holds it)
  kScratchSlots = 3,
};

// At least `bytes` bytes, valid until the same thread asks the same slot again.
void* scratch(int slot, std::size_t bytes);

}  // namespace fastnn
