// The fully connected layer on the GPU: y = act(x @ w^T + b) with the bias and activation fused
// into the GEMM epilogue (gemm_kernel.cuh), and its backward: dz = dy * act'(z, y) (the shared
// activations.h derivative), db = column sums of dz, dw = dz^T x, dx = dz w.
#include "common/activations.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kSumCols = 32, kSumRows = 16;

// out[j] = sum_i x[i, j]. A block owns 32 columns; its 16 thread rows stride down the rows
// (coalesced along j) and their partial sums are added in a fixed order: the result does not
// depend on scheduling.
template <class T>
__global__ void column_sums_kernel(T* out, index_t out_stride, const T* x, index_t rs, index_t cs,
                                   index_t rows, index_t cols) {
  __shared__ T part[kSumRows][kSumCols + 1];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const index_t j = static_cast<index_t>(blockIdx.x) * kSumCols + tx;
  T s = T(0);
  if (j < cols)
    for (index_t i = ty; i < rows; i += kSumRows) s += x[i * rs + j * cs];
  part[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && j < cols) {
    T t = T(0);
    for (int r = 0; r < kSumRows; ++r) t += part[r][tx];
    out[j * out_stride] = t;
  }
}

// Scratch memory from the stream-ordered allocator of runtime.cu, released on every exit path.
struct Scratch {
  void* p = nullptr;
  explicit Scratch(std::size_t nbytes) : p(reinterpret_cast<void*>(device_malloc(nbytes))) {}
  ~Scratch() { device_free(reinterpret_cast<std::uintptr_t>(p)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

template <class T>
void linear_t(index_t m, index_t n, index_t k, MatArg y, MatArg z, MatArg x, MatArg w,
              VecArg bias, int act, double param) {
  GemmParams<T> p;
  p.m = m; p.n = n; p.k = k;
  p.a = reinterpret_cast<const T*>(x.ptr); p.rsa = x.rs; p.csa = x.cs;
  p.b = reinterpret_cast<const T*>(w.ptr); p.rsb = w.cs; p.csb = w.rs;  // B = w^T
  p.out = reinterpret_cast<T*>(y.ptr); p.rso = y.rs; p.cso = y.cs;
  p.bias = reinterpret_cast<const T*>(bias.ptr); p.bias_stride = bias.stride;
  p.z = reinterpret_cast<T*>(z.ptr); p.rsz = z.rs; p.csz = z.cs;
  p.act = act;
  p.act_param = T(param);
  launch_gemm(p);
}

template <class T>
void linear_backward_t(index_t m, index_t n, index_t k, MatArg dx, MatArg dw, VecArg db,
                       MatArg dy, MatArg x, MatArg w, MatArg y, MatArg z, int act, double param) {
  if (m <= 0 || n <= 0) return;
  // dz: dy itself for the identity, else a contiguous m x n scratch matrix.
  const T* dz = reinterpret_cast<const T*>(dy.ptr);
  index_t rsz = dy.rs, csz = dy.cs;
  Scratch buf(act != act::NONE ? std::size_t(m) * std::size_t(n) * sizeof(T) : 0);
  if (act != act::NONE) {
    Shape shape;
    shape.ndim = 2;
    shape.dim[0] = m;
    shape.dim[1] = n;
    Strided<T> o;
    o.p = static_cast<T*>(buf.p);
    o.s[0] = n;
    o.s[1] = 1;
    auto in = [](MatArg a) {
      Strided<const T> v;
      v.p = reinterpret_cast<const T*>(a.ptr);
      v.s[0] = a.rs;
      v.s[1] = a.cs;
      return v;
    };
    launch_act_backward<T>(shape, o, in(dy), in(z), in(y), act, T(param));
    dz = o.p;
    rsz = n;
    csz = 1;
  }
  if (db.ptr) {
    const dim3 grid(static_cast<unsigned>((n + kSumCols - 1) / kSumCols));
    launch("linear_backward bias-gradient launch", column_sums_kernel<T>, grid,
           dim3(kSumCols, kSumRows), reinterpret_cast<T*>(db.ptr), db.stride, dz, rsz, csz, m, n);
  }
  if (dw.ptr) {  // dw (n x k) = dz^T (n x m) @ x (m x k)
    GemmParams<T> g;
    g.m = n; g.n = k; g.k = m;
    g.a = dz; g.rsa = csz; g.csa = rsz;
    g.b = reinterpret_cast<const T*>(x.ptr); g.rsb = x.rs; g.csb = x.cs;
    g.out = reinterpret_cast<T*>(dw.ptr); g.rso = dw.rs; g.cso = dw.cs;
    launch_gemm(g);
  }
  if (dx.ptr) {  // dx (m x k) = dz (m x n) @ w (n x k)
    GemmParams<T> h;
    h.m = m; h.n = k; h.k = n;
    h.a = dz; h.rsa = rsz; h.csa = csz;
    h.b = reinterpret_cast<const T*>(w.ptr); h.rsb = w.rs; h.csb = w.cs;
    h.out = reinterpret_cast<T*>(dx.ptr); h.rso = dx.rs; h.cso = dx.cs;
    launch_gemm(h);
  }
}

}  // namespace

void linear(bool dbl, index_t m, index_t n, index_t k, MatArg y, MatArg z, MatArg x, MatArg w,
            VecArg bias, int act, double param) {
  if (dbl) linear_t<double>(m, n, k, y, z, x, w, bias, act, param);
  else linear_t<float>(m, n, k, y, z, x, w, bias, act, param);
}

void linear_backward(bool dbl, index_t m, index_t n, index_t k, MatArg dx, MatArg dw, VecArg db,
                     MatArg dy, MatArg x, MatArg w, MatArg y, MatArg z, int act, double param) {
  if (dbl) linear_backward_t<double>(m, n, k, dx, dw, db, dy, x, w, y, z, act, param);
  else linear_backward_t<float>(m, n, k, dx, dw, db, dy, x, w, y, z, act, param);
}

}  // namespace cuda
}  // namespace fastnn
