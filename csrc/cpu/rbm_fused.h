// The persistent-CD-1 step as one phased job (the RBM family's fast path), float32 or bfloat16.
#pragma once

#include "cpu/rbm.h"

namespace fastnn {

// One PCD-1 update of w, b_vis, b_hid and the chain, the same arithmetic as rbm_cd_step's general
// path of the same precision (bit for bit, except the reconstruction error's summation order),
// when the step is of that kind: a persistent chain, k = 1, no momentum or weight decay (and, on
// bfloat16 products, an even batch). Returns false, having done nothing, otherwise. *err: the
// reconstruction error when s.compute_error, else NaN.
bool rbm_cd_step_fused(float* w, float* b_vis, float* b_hid, float* chain, const float* v0,
                       const RbmStep& s, double* err);  // v0: as rbm_cd_step's (s.rows)

namespace testing {
// Off: rbm_cd_step takes its general path (the tests compare the two).
void set_rbm_fused(bool on);
}  // namespace testing

}  // namespace fastnn
