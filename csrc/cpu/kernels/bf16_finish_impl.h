// The float32 epilogue on a finished block of bfloat16 products (float32 sums), and the walk over
// C's blocks: included by the bfloat16 ISA files inside their own namespaces, after <cstring>,
// common/activations.h, common/rbm_math.h and cpu/gemm/gemm.h. The same arithmetic, in the same
// order, as the float32 frame's store (driver_impl.h): x = alpha*acc (+ beta*C) (+ bias), then
// the RBM units or the activation, so that the two precisions differ only in the products.

// Starts pulling in a C block, read (beta != 0) or written only after its products: a C row
// that has left the cache (the RBM's weights, updated in place) would otherwise stall the
// epilogue for a memory latency per line. The kernels ask for the next task's block, a whole
// task ahead.
static inline void prefetch_block(const GemmProblem<float>& p, index_t i0, index_t j0, int rows,
                                  int cols) {
  rows = rows < int(p.m - i0) ? rows : int(p.m - i0);
  cols = cols < int(p.n - j0) ? cols : int(p.n - j0);
  for (int r = 0; r < rows; ++r) {
    const float* row = p.c + (i0 + r) * p.rsc + j0 * p.csc;
    __builtin_prefetch(row, 1, 3);
    __builtin_prefetch(row + (cols - 1) * p.csc, 1, 3);
  }
}

// RBM units on a whole block of full rows (beta 0, unit-stride C): the same arithmetic as
// finish_block's, but each step runs over all rows x ldt values at once. Row by row, the sigmoid
// ran on two vectors at a time and waited on its polynomial's latency.
static void finish_rbm_block(float* t, int ldt, int rows, const GemmProblem<float>& p,
                             index_t i0, index_t j0) {
  const Epilogue<float>& ep = p.ep;
  const int n = rows * ldt;
  if (p.alpha != 1.0f)
    for (int e = 0; e < n; ++e) t[e] = p.alpha * t[e];
  if (ep.bias) {
    for (int r = 0; r < rows; ++r) {
      float* tr = t + r * ldt;
      if (ep.bias_axis == 1) {
        for (int c = 0; c < ldt; ++c) tr[c] += ep.bias[j0 + c];
      } else {
        const float bi = ep.bias[i0 + r];
        for (int c = 0; c < ldt; ++c) tr[c] += bi;
      }
    }
  }
  for (int e = 0; e < n; ++e) t[e] = rbm::sigmoid(t[e]);
  if (ep.rbm == 2) {
    const rng::Key key{ep.key0, ep.key1};
    const std::uint32_t step = static_cast<std::uint32_t>(ep.cnt_cs);
    for (int r = 0; r < rows; ++r) {
      float* tr = t + r * ldt;
      const std::uint32_t base =
          static_cast<std::uint32_t>(ep.cnt0 + (i0 + r) * ep.cnt_rs + j0 * ep.cnt_cs);
      for (int c = 0; c < ldt; ++c)
        tr[c] = rbm::bernoulli<float>(tr[c], key, base + std::uint32_t(c) * step, ep.stage);
    }
  }
  for (int r = 0; r < rows; ++r) {
    float* crow = p.c + (i0 + r) * p.rsc + j0;
    const float* tr = t + r * ldt;
    for (int c = 0; c < ldt; ++c) crow[c] = tr[c];
  }
}

// t: rows x cols sums (row stride ldt, cols <= 64) -> C rows i0.., columns j0...
static void finish_block(float* t, int ldt, int rows, int cols, const GemmProblem<float>& p,
                         index_t i0, index_t j0) {
  const Epilogue<float>& ep = p.ep;
  if (ep.rbm && cols == ldt && p.beta == 0.0f && p.csc == 1)
    return finish_rbm_block(t, ldt, rows, p, i0, j0);
  float x[64];
  for (int r = 0; r < rows; ++r) {
    const float* tr = t + r * ldt;
    float* crow = p.c + (i0 + r) * p.rsc + j0 * p.csc;
    const index_t csc = p.csc;
    if (p.alpha == 1.0f) {
      for (int c = 0; c < cols; ++c) x[c] = tr[c];
    } else {
      for (int c = 0; c < cols; ++c) x[c] = p.alpha * tr[c];
    }
    if (p.beta != 0.0f) {
      if (csc == 1) {
        for (int c = 0; c < cols; ++c) x[c] = p.beta * crow[c] + x[c];
      } else {
        for (int c = 0; c < cols; ++c) x[c] = p.beta * crow[c * csc] + x[c];
      }
    }
    if (ep.bias) {
      if (ep.bias_axis == 1) {
        for (int c = 0; c < cols; ++c) x[c] += ep.bias[j0 + c];
      } else {
        const float bi = ep.bias[i0 + r];
        for (int c = 0; c < cols; ++c) x[c] += bi;
      }
    }
    if (ep.rbm) {
      for (int c = 0; c < cols; ++c) x[c] = rbm::sigmoid(x[c]);
      if (ep.rbm == 2) {
        const rng::Key key{ep.key0, ep.key1};
        const std::uint32_t base = static_cast<std::uint32_t>(ep.cnt0 + (i0 + r) * ep.cnt_rs + j0 * ep.cnt_cs);
        const std::uint32_t step = static_cast<std::uint32_t>(ep.cnt_cs);
        for (int c = 0; c < cols; ++c)
          x[c] = rbm::bernoulli<float>(x[c], key, base + std::uint32_t(c) * step, ep.stage);
      }
    } else if (ep.act == act::RELU) {
      for (int c = 0; c < cols; ++c) x[c] = act::forward<float>(act::RELU, x[c], 0.0f);
    } else if (ep.act != act::NONE) {
      for (int c = 0; c < cols; ++c) x[c] = act::forward<float>(ep.act, x[c], ep.act_param);
    }
    if (csc == 1) {
      for (int c = 0; c < cols; ++c) crow[c] = x[c];  // a vector loop, not a memcpy call a row
    } else {
      for (int c = 0; c < cols; ++c) crow[c * csc] = x[c];
    }
  }
}

// Walks tasks [t0, t1) of C's grid of MT x NT blocks (row-major when along_rows, else
// column-major), calling block(i0, j0, rows, cols) for each, with the next task's C block
// prefetched one task ahead. Shared by the bfloat16 kernels, whose blocks differ.
template <int MT, int NT, class Block>
static void for_each_task(const GemmProblem<float>& p, bool along_rows, index_t t0, index_t t1,
                          Block&& block) {
  const index_t ntm = (p.m + MT - 1) / MT, ntn = (p.n + NT - 1) / NT;
  auto origin = [&](index_t t, index_t* i0, index_t* j0) {
    *i0 = (along_rows ? t / ntn : t % ntm) * MT;
    *j0 = (along_rows ? t % ntn : t / ntm) * NT;
  };
  index_t i0, j0;
  if (t0 < t1) {
    origin(t0, &i0, &j0);
    prefetch_block(p, i0, j0, MT, NT);
  }
  for (index_t task = t0; task < t1; ++task) {
    origin(task, &i0, &j0);
    if (task + 1 < t1) {
      index_t i1, j1;
      origin(task + 1, &i1, &j1);
      prefetch_block(p, i1, j1, MT, NT);
    }
    block(i0, j0, static_cast<int>(p.m - i0 < MT ? p.m - i0 : MT),
          static_cast<int>(p.n - j0 < NT ? p.n - j0 : NT));
  }
}
