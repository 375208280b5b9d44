// Functional hashing on a CUDA device: the canonical stream and chunk digests of
// evoforge/hashing.h, computed with one thread block per 64 KiB chunk (grid-stride over chunks).
//
// Thread t of a block owns lane j = t % 8 of scramble block bl = t / 8 (64 blocks x 8 lanes = 512
// threads): it reads the 16 words bl*128 + j + 8s (s = 0..15) of the chunk, sums their terms,
// scrambles the sum, and the block adds the 64 scrambled sums of each lane (warp shuffles, then
// shared memory). A warp reads four 64-byte runs per load, every 32-byte sector fully used.
// Thread 0 turns the 8 lane accumulators into the chunk digest and keeps a running sum over the
// chunks of its block; one atomicAdd per thread block adds it to the workspace (exact integer
// sums: the order never matters). The host copies those 16 bytes back and finalises.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/hashing.h"
#include "evoforge/hashing.h"

namespace evoforge::cuda {
namespace {

using hashing::Digest;
namespace H = hashing;

constexpr int kThreads = H::kBlocksPerChunk * H::kLanes;  // 512
static_assert(kThreads == 512, "one thread per (block, lane) of a chunk");

struct Geo {
  int ndim;
  int64_t n;  // elements
  int64_t shape[H::kMaxDims];
  int64_t stride[H::kMaxDims];  // elements
};

// ---- element -> canonical lane (the same functions as the CPU) ------------------------------

struct ConvF32 {
  using Storage = uint32_t;
  static constexpr int kPer = 2;
  H::QuantF32 q;
  __device__ __forceinline__ uint64_t operator()(Storage v) const { return H::canon_f32(v, q.half, q.mask); }
};
struct ConvF16 {
  using Storage = uint16_t;
  static constexpr int kPer = 2;
  H::QuantF32 q;
  __device__ __forceinline__ uint64_t operator()(Storage v) const {
    return H::canon_f32(H::f16_to_f32_bits(v), q.half, q.mask);
  }
};
struct ConvBF16 {
  using Storage = uint16_t;
  static constexpr int kPer = 2;
  H::QuantF32 q;
  __device__ __forceinline__ uint64_t operator()(Storage v) const {
    return H::canon_f32(H::bf16_to_f32_bits(v), q.half, q.mask);
  }
};
struct ConvF64 {
  using Storage = uint64_t;
  static constexpr int kPer = 1;
  H::QuantF64 q;
  __device__ __forceinline__ uint64_t operator()(Storage v) const { return H::canon_f64(v, q.half, q.mask); }
};
template <typename T>
struct ConvInt {
  using Storage = T;
  static constexpr int kPer = 1;
  __device__ __forceinline__ uint64_t operator()(Storage v) const { return uint64_t(int64_t(v)); }
};
struct ConvBool {
  using Storage = uint8_t;
  static constexpr int kPer = 1;
  __device__ __forceinline__ uint64_t operator()(Storage v) const { return v != 0; }
};
// Grid: nearest integer to x / g, ties to even (rint in the default rounding mode), as float64.
template <typename S>
struct ConvGrid {
  using Storage = S;
  static constexpr int kPer = 1;
  double g;
  __device__ __forceinline__ static double value(uint16_t v, int kind) {
    return double(__uint_as_float(kind == 0 ? H::f16_to_f32_bits(v) : H::bf16_to_f32_bits(v)));
  }
  int kind;  // for uint16_t storage: 0 = float16, 1 = bfloat16
  __device__ __forceinline__ uint64_t operator()(Storage v) const {
    double x;
    if constexpr (sizeof(S) == 2)
      x = value(v, kind);
    else if constexpr (sizeof(S) == 4)
      x = double(__uint_as_float(v));
    else
      x = __longlong_as_double(static_cast<long long>(v));
    return H::canon_grid_bits(rint(x / g));
  }
};

template <typename S>
__device__ __forceinline__ S load_elem(const char* base, const Geo& geo, int64_t e, bool contig) {
  if (contig) return reinterpret_cast<const S*>(base)[e];
  int64_t off = 0;
  for (int k = geo.ndim - 1; k >= 0; --k) {
    const int64_t ext = geo.shape[k];
    const int64_t i = e % ext;
    e /= ext;
    off += i * geo.stride[k];
  }
  return *reinterpret_cast<const S*>(base + off * int64_t(sizeof(S)));
}

template <typename S>
struct alignas(2 * sizeof(S)) Pair {
  S x, y;
};

// Canonical word w of the stream (two 32-bit lanes or one 64-bit lane).
template <typename Conv, bool kContig, bool kAligned>
__device__ __forceinline__ uint64_t load_word(const char* base, const Geo& geo, const Conv& conv,
                                              int64_t w) {
  using S = typename Conv::Storage;
  if constexpr (Conv::kPer == 2) {
    const int64_t e0 = 2 * w;
    if (e0 + 1 < geo.n) {
      if constexpr (kContig && kAligned) {
        const Pair<S> p = reinterpret_cast<const Pair<S>*>(base)[w];
        return conv(p.x) | (conv(p.y) << 32);
      } else {
        return conv(load_elem<S>(base, geo, e0, kContig)) |
               (conv(load_elem<S>(base, geo, e0 + 1, kContig)) << 32);
      }
    }
    return conv(load_elem<S>(base, geo, e0, kContig));
  } else {
    return conv(load_elem<S>(base, geo, w, kContig));
  }
}

template <typename Conv, bool kContig, bool kAligned>
__global__ void __launch_bounds__(kThreads) hash_chunks_kernel(const char* __restrict__ base, Geo geo,
                                                              Conv conv, int64_t nwords,
                                                              uint64_t seed,
                                                              unsigned long long* __restrict__ out) {
  __shared__ uint64_t part[kThreads / 32][H::kLanes];
  __shared__ uint64_t acc[H::kLanes];
  const int t = threadIdx.x;
  const int j = t & (H::kLanes - 1);
  const int bl = t / H::kLanes;
  const uint64_t d = H::lane_step(j), e = H::block_step(j);
  const int64_t nchunks = (nwords + H::kChunkWords - 1) / H::kChunkWords;
  uint64_t sum_lo = 0, sum_hi = 0;
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const uint64_t cbase = H::chunk_base(seed, uint64_t(c));
    const uint64_t k = H::data_key(cbase, j);
    const int64_t w0 = c * H::kChunkWords;
    const int64_t nw_c = min(H::kChunkWords, nwords - w0);
    const int64_t first = int64_t(bl) * H::kBlockWords;  // first word of this thread's block
    uint64_t x = 0;
    if (first < nw_c) {
      uint64_t B = 0;
      const uint64_t s0 = uint64_t(bl) * H::kStripesPerBlock;
      if (first + H::kBlockWords <= nw_c) {
        uint64_t wv[H::kStripesPerBlock];
#pragma unroll
        for (int s = 0; s < H::kStripesPerBlock; ++s)
          wv[s] = load_word<Conv, kContig, kAligned>(base, geo, conv, w0 + first + j + 8 * s);
#pragma unroll
        for (int s = 0; s < H::kStripesPerBlock; ++s)
          B += H::word_term(wv[s], k + (s0 + uint64_t(s)) * d);
      } else {
        for (int s = 0; s < H::kStripesPerBlock; ++s) {
          const int64_t i = first + j + 8 * s;
          if (i < nw_c) B += H::word_term(load_word<Conv, kContig, kAligned>(base, geo, conv, w0 + i),
                                          k + (s0 + uint64_t(s)) * d);
        }
      }
      x = H::scramble(B, H::scramble_key(cbase, j) + uint64_t(bl) * e);
    }
    // Sum x over the 4 blocks of this warp (lanes j, j+8, j+16, j+24), then over the 16 warps.
    x += __shfl_xor_sync(0xffffffffu, x, 8);
    x += __shfl_xor_sync(0xffffffffu, x, 16);
    __syncthreads();  // the previous chunk is done with part[] and acc[]
    if ((t & 31) < H::kLanes) part[t / 32][j] = x;
    __syncthreads();
    if (t < H::kLanes) {
      uint64_t a = 0;
      for (int w = 0; w < kThreads / 32; ++w) a += part[w][t];
      acc[t] = a;
    }
    __syncwarp();
    if (t == 0) {
      uint64_t lane_acc[H::kLanes];
      for (int i = 0; i < H::kLanes; ++i) lane_acc[i] = acc[i];
      const Digest dg = H::chunk_digest(lane_acc, seed, uint64_t(c), uint64_t(nw_c));
      sum_lo += dg.lo;
      sum_hi += dg.hi;
    }
  }
  if (t == 0) {
    atomicAdd(out, static_cast<unsigned long long>(sum_lo));
    atomicAdd(out + 1, static_cast<unsigned long long>(sum_hi));
  }
}

template <typename Conv>
void launch(const void* data, const Geo& geo, const Conv& conv, int64_t nwords, uint64_t seed,
            unsigned long long* out, cudaStream_t stream) {
  int dev = 0, sms = 1;
  EVOFORGE_CUDA_CHECK(cudaGetDevice(&dev));
  EVOFORGE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t nchunks = (nwords + H::kChunkWords - 1) / H::kChunkWords;
  const unsigned grid = unsigned(std::max<int64_t>(1, std::min<int64_t>(nchunks, int64_t(sms) * 4)));
  // C-contiguous when every dimension of extent > 1 has the packed stride.
  bool contig = true;
  int64_t expect = 1;
  for (int k = geo.ndim - 1; k >= 0; --k) {
    if (geo.shape[k] != 1 && geo.stride[k] != expect) contig = false;
    expect *= geo.shape[k];
  }
  using S = typename Conv::Storage;
  const bool aligned = reinterpret_cast<uintptr_t>(data) % (Conv::kPer * sizeof(S)) == 0;
  const char* base = static_cast<const char*>(data);
  if (contig && aligned)
    hash_chunks_kernel<Conv, true, true><<<grid, kThreads, 0, stream>>>(base, geo, conv, nwords, seed, out);
  else if (contig)
    hash_chunks_kernel<Conv, true, false><<<grid, kThreads, 0, stream>>>(base, geo, conv, nwords, seed, out);
  else
    hash_chunks_kernel<Conv, false, false><<<grid, kThreads, 0, stream>>>(base, geo, conv, nwords, seed, out);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t hash_workspace_bytes() { return 2 * sizeof(unsigned long long); }

Digest hash_stream_cuda(const void* data, H::ElemType type, int ndim, const int64_t* shape,
                        const int64_t* strides, const H::Quant& q, uint64_t seed, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream, uint64_t* nwords_out) {
  if (ndim < 0 || ndim > H::kMaxDims) throw CudaError("hash: too many dimensions");
  if (workspace == nullptr || workspace_bytes < hash_workspace_bytes())
    throw CudaError("hash: workspace too small");
  Geo geo{};
  geo.ndim = ndim;
  geo.n = 1;
  for (int k = 0; k < ndim; ++k) {
    if (shape[k] < 0 || strides[k] < 0) throw CudaError("hash: negative extent or stride");
    geo.shape[k] = shape[k];
    geo.stride[k] = strides[k];
    geo.n *= shape[k];
  }
  if (H::is_float(type) && q.mode == H::QuantMode::kMantissa) {
    const int maxb = type == H::ElemType::kF64 ? 52 : 23;
    if (q.mantissa_bits < 0 || q.mantissa_bits > maxb)
      throw std::invalid_argument("hash: mantissa_bits out of range");
  }
  if (H::is_float(type) && q.mode == H::QuantMode::kGrid && !(q.grid > 0 && q.grid <= std::numeric_limits<double>::max()))
    throw std::invalid_argument("hash: grid must be a positive finite number");
  const bool lanes32 = H::lanes_are_32bit(type, q);
  const int64_t nwords = lanes32 ? (geo.n + 1) / 2 : geo.n;
  *nwords_out = uint64_t(nwords);
  if (nwords == 0) return {0, 0};
  auto* out = static_cast<unsigned long long*>(workspace);
  EVOFORGE_CUDA_CHECK(cudaMemsetAsync(out, 0, hash_workspace_bytes(), stream));
  const int keep32 = q.mode == H::QuantMode::kMantissa ? q.mantissa_bits : 23;
  const int keep64 = q.mode == H::QuantMode::kMantissa ? q.mantissa_bits : 52;
  if (H::is_float(type) && q.mode == H::QuantMode::kGrid) {
    switch (type) {
      case H::ElemType::kF16: launch(data, geo, ConvGrid<uint16_t>{q.grid, 0}, nwords, seed, out, stream); break;
      case H::ElemType::kBF16: launch(data, geo, ConvGrid<uint16_t>{q.grid, 1}, nwords, seed, out, stream); break;
      case H::ElemType::kF32: launch(data, geo, ConvGrid<uint32_t>{q.grid, 0}, nwords, seed, out, stream); break;
      default: launch(data, geo, ConvGrid<uint64_t>{q.grid, 0}, nwords, seed, out, stream); break;
    }
  } else {
    switch (type) {
      case H::ElemType::kF16: launch(data, geo, ConvF16{H::quant_f32(keep32)}, nwords, seed, out, stream); break;
      case H::ElemType::kBF16: launch(data, geo, ConvBF16{H::quant_f32(keep32)}, nwords, seed, out, stream); break;
      case H::ElemType::kF32: launch(data, geo, ConvF32{H::quant_f32(keep32)}, nwords, seed, out, stream); break;
      case H::ElemType::kF64: launch(data, geo, ConvF64{H::quant_f64(keep64)}, nwords, seed, out, stream); break;
      case H::ElemType::kI8: launch(data, geo, ConvInt<int8_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kI16: launch(data, geo, ConvInt<int16_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kI32: launch(data, geo, ConvInt<int32_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kI64: launch(data, geo, ConvInt<int64_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kU8: launch(data, geo, ConvInt<uint8_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kU16: launch(data, geo, ConvInt<uint16_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kU32: launch(data, geo, ConvInt<uint32_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kU64: launch(data, geo, ConvInt<uint64_t>{}, nwords, seed, out, stream); break;
      case H::ElemType::kBool: launch(data, geo, ConvBool{}, nwords, seed, out, stream); break;
    }
  }
  unsigned long long host[2] = {0, 0};
  EVOFORGE_CUDA_CHECK(cudaMemcpyAsync(host, out, sizeof(host), cudaMemcpyDeviceToHost, stream));
  EVOFORGE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {uint64_t(host[0]), uint64_t(host[1])};
}

}  // namespace evoforge::cuda
