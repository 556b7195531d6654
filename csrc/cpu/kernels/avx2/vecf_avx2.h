// The float32 vector wrapper of the AVX2 files that use csrc/cpu/kernels/vmath_impl.h (the
// recurrent gates, the elementwise activations). Included inside the including file's own
// namespace, after <immintrin.h> (no header guard on purpose: each file gets its own copy).

struct VecF {
  using R = __m256;
  static constexpr int N = 8;
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  // A store that bypasses the caches, for data read back much later (the saved gates of the
  // recurrent layers, which would otherwise evict the step's weights).
  static void stream(float* p, R v) {
    if ((reinterpret_cast<std::uintptr_t>(p) & 31) == 0) _mm256_stream_ps(p, v);
    else _mm256_storeu_ps(p, v);
  }
  static void fence() { _mm_sfence(); }  // orders the streamed stores before the job ends
  // A true division: the 12-bit estimate would need two Newton steps to stay within a few ulp.
  static R rcp(R a) { return _mm256_div_ps(_mm256_set1_ps(1.0f), a); }
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static R copysign(R mag, R sgn) {
    const R s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
  }
  static R select_lt(R a, R b, R x, R y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static R pow2i(R n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  // x*x - hi exactly (hi the rounded square), for the Gaussian tails of vmath_impl.h.
  static R square_err(R x, R hi) { return _mm256_fmsub_ps(x, x, hi); }
};
