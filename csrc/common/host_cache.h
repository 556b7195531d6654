// Large host buffers for the outputs of ops, kept for reuse once their array is gone.
//
// Why: an op that returns several large arrays (attention's gradients, a recurrent layer's saved
// gates) frees them together when the caller drops them, and the C library then hands that much
// memory back to the OS; the next call gets fresh pages, which the kernel zeroes on first touch.
// On an AVX-512 Xeon that zeroing was 7% of an attention forward + backward (67 MB of outputs)
// and 5% of an LSTM forward + backward. Blocks here are whole 2 MiB huge pages, reused by best
// fit, and the cache never holds more than its limit (FASTNN_HOST_CACHE_MB, default 512; 0
// turns it off); fastnn.empty_cache() frees every cached block.
//
// Thread-safe, and fork-safe: a forked child starts with its own copy of the cache, whose
// mutex fork handlers keep from being copied locked.
#pragma once
#include <cstddef>

namespace fastnn {

// A buffer of at least `bytes` bytes, 2 MiB aligned; *granted: its size, to hand back to give().
void* host_cache_take(std::size_t bytes, std::size_t* granted);
// Returns a buffer from take(): cached for reuse, or freed when the cache would exceed its limit.
void host_cache_give(void* p, std::size_t granted);
// Bytes held in cached (free) blocks now, and the limit.
std::size_t host_cache_bytes();
std::size_t host_cache_limit();
// Frees every cached block.
void host_cache_release();

}  // namespace fastnn
