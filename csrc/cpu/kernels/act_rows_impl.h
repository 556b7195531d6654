// The rows of csrc/cpu/act_rows.h over a float32 wrapper VecF and csrc/cpu/kernels/vmath_impl.h,
// both included first by kernels/<isa>/act_<isa>.cpp inside its own namespace. A row's tail
// (fewer than VecF::N values) goes through a zero-padded buffer, so it gets the very same math.

template <class V, class F>
static inline void map_row(float* y, const float* x, index_t n, F f) {
  index_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(y + i, f(V::load(x + i)));
  if (i < n) {
    float buf[V::N] = {};
    for (index_t j = i; j < n; ++j) buf[j - i] = x[j];
    V::store(buf, f(V::load(buf)));
    for (index_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

template <class V>
static void gelu_row(float* y, const float* x, index_t n) {
  map_row<V>(y, x, n, [](typename V::R v) { return v_gelu<V>(v); });
}

template <class V>
static void gelu_backward_row(float* dx, const float* dy, const float* z, index_t n) {
  index_t i = 0;
  for (; i + V::N <= n; i += V::N)
    V::store(dx + i, V::mul(V::load(dy + i), v_gelu_grad<V>(V::load(z + i))));
  if (i < n) {
    float bz[V::N] = {}, bd[V::N] = {};
    for (index_t j = i; j < n; ++j) {
      bz[j - i] = z[j];
      bd[j - i] = dy[j];
    }
    V::store(bd, V::mul(V::load(bd), v_gelu_grad<V>(V::load(bz))));
    for (index_t j = i; j < n; ++j) dx[j] = bd[j - i];
  }
}

template <class V>
static ActRows make_act_rows(const char* name) {
  return ActRows{name, &gelu_row<V>, &gelu_backward_row<V>};
}
