#include "common/workspace.h"

#include <cstdlib>
#include <new>

namespace fastnn {
namespace {

struct Buffer {
  void* ptr = nullptr;
  std::size_t size = 0;
  ~Buffer() { std::free(ptr); }
};

thread_local Buffer g_buffers[kScratchSlots];

}  // namespace

void* scratch(int slot, std::size_t bytes) {
  Buffer& b = g_buffers[slot];
  if (bytes > b.size) {
    std::free(b.ptr);
    std::size_t size = (bytes + 4095) & ~std::size_t(4095);
    b.ptr = std::aligned_alloc(64, size);
    b.size = b.ptr ? size : 0;
    if (!b.ptr) throw std::bad_alloc();
  }
  return b.ptr;
}

}  // namespace fastnn
