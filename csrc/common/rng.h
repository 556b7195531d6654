// Counter-based random bits: the value for element i depends only on (seed, i), never on which
// thread or which backend computed it, so a dropout mask is reproducible everywhere (the Numba
// kernels implement the same arithmetic bit for bit) and a CUDA port needs no RNG state.
#pragma once
#include <stdint.h>

#include "common/hd.h"

namespace fastnn {
namespace rng {

// splitmix64's finalizer: turns a user seed (often 0, 1, 2, ...) into two unrelated 32-bit keys.
FASTNN_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A 32-bit avalanche hash (xor-shift-multiply, "lowbias32" constants). 32-bit lanes keep the
// per-element work vectorizable on every ISA, which 64-bit multiplies are not before AVX-512DQ.
FASTNN_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

struct Key {
  uint32_t k0, k1;
};

FASTNN_HD Key key_from_seed(uint64_t seed) {
  uint64_t h = splitmix64(seed);
  Key k;
  k.k0 = static_cast<uint32_t>(h);
  k.k1 = static_cast<uint32_t>(h >> 32);
  return k;
}

// Two keyed rounds: one round of a bijection over consecutive counters leaves visible structure.
// `hi` is the upper half of a 64-bit element index (zero below 2^32 elements).
FASTNN_HD uint32_t bits(Key k, uint32_t lo, uint32_t hi) {
  return mix32(mix32(lo ^ k.k0) ^ k.k1 ^ hi);
}

// An element is kept when its bits are >= this: P(drop) = threshold / 2^32, within 2^-32 of rate.
FASTNN_HD uint32_t drop_threshold(double rate) {
  return static_cast<uint32_t>(rate * 4294967296.0);
}

}  // namespace rng
}  // namespace fastnn
