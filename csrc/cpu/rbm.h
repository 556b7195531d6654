// Restricted Boltzmann machines on the GEMM family: conditional means and samples with the
// sigmoid and the Bernoulli draw in the GEMM epilogue, one contrastive-divergence update, free
// energy and pseudo-likelihood. w is (n_hidden, n_visible), row-major; every other matrix is
// C-contiguous. Random numbers: common/rbm_math.h; sampling stages: fastnn/reference/rbm.py.
#pragma once
#include <cstdint>

#include "cpu/linear.h"

namespace fastnn {

// h (B x nh) := sigmoid(v w^T + b_hid), Bernoulli-sampled (stage 0 of seed) when `sample`.
template <class T>
void rbm_hidden(T* h, const T* v, const T* w, const T* b_hid, index_t batch, index_t nv,
                index_t nh, bool sample, std::uint64_t seed);

// v (B x nv) := sigmoid(h w + b_vis) (Bernoulli units) or h w + b_vis (Gaussian units), then the
// draw: Bernoulli 0/1, or + N(0, 1) noise.
template <class T>
void rbm_visible(T* v, const T* h, const T* w, const T* b_vis, index_t batch, index_t nv,
                 index_t nh, bool gaussian, bool sample, std::uint64_t seed);

struct RbmStep {
  index_t batch = 0, nv = 0, nh = 0;
  index_t particles = 0;  // rows of the persistent chain (0: CD-k from the data)
  int k = 1;
  double lr = 0.0, momentum = 0.0, weight_decay = 0.0;
  bool gaussian = false, compute_error = true;
  std::uint64_t seed = 0;
  // When set, the batch is rows v0[rows[i]], i < batch, of the array at v0 (a training set and a
  // shuffled order): gathered inside the step rather than copied by the caller first.
  const std::int64_t* rows = nullptr;
};

// One CD-k / PCD update of w, b_vis, b_hid in place (vel_* used when momentum != 0, chain when
// particles > 0). Returns the reconstruction error, NaN when not computed.
template <class T>
double rbm_cd_step(T* w, T* b_vis, T* b_hid, T* chain, T* vel_w, T* vel_b_vis, T* vel_b_hid,
                   const T* v0, const RbmStep& s);

// out[i] := F(v_i), in double.
template <class T>
void rbm_free_energy(double* out, const T* v, const T* w, const T* b_vis, const T* b_hid,
                     index_t batch, index_t nv, index_t nh, bool gaussian);

// out[i] := nv * log sigmoid(F(v_i with unit j_i flipped) - F(v_i)), j_i from the seed.
template <class T>
void rbm_pseudo_likelihood(double* out, const T* v, const T* w, const T* b_vis, const T* b_hid,
                           index_t batch, index_t nv, index_t nh, std::uint64_t seed);

}  // namespace fastnn
