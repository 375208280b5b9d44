// Bindings for the hashing kernels. The Python layer (evoforge/hashing/) validates dtypes and
// options, builds the header words and picks the element type code; here we map buffers (any
// strides, no copies) and release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <vector>

#include "evoforge/common.h"
#include "evoforge/hashing.h"

namespace py = pybind11;

namespace evoforge {
namespace {

using hashing::Digest;

py::bytes digest_bytes(Digest d) {
  char out[16];
  for (int i = 0; i < 8; ++i) {
    out[i] = char((d.lo >> (8 * i)) & 0xff);
    out[8 + i] = char((d.hi >> (8 * i)) & 0xff);
  }
  return py::bytes(out, 16);
}

Digest digest_from_bytes(const std::string& s) {
  EVOFORGE_CHECK(s.size() == 16, "a digest has 16 bytes, got " << s.size());
  Digest d{0, 0};
  for (int i = 0; i < 8; ++i) {
    d.lo |= uint64_t(uint8_t(s[size_t(i)])) << (8 * i);
    d.hi |= uint64_t(uint8_t(s[size_t(8 + i)])) << (8 * i);
  }
  return d;
}

hashing::Quant make_quant(int mode, int mantissa_bits, double grid) {
  EVOFORGE_CHECK(mode >= 0 && mode <= 2, "quantisation mode must be 0, 1 or 2");
  hashing::Quant q;
  q.mode = static_cast<hashing::QuantMode>(mode);
  q.mantissa_bits = mantissa_bits;
  q.grid = grid;
  return q;
}

py::bytes hash_array(py::array x, int type, int mode, int mantissa_bits, double grid,
                     const std::vector<uint64_t>& header, uint64_t seed, int threads,
                     bool force_scalar) {
  EVOFORGE_CHECK(type >= 0 && type <= int(hashing::ElemType::kBool), "unknown element type " << type);
  EVOFORGE_CHECK(x.ndim() <= hashing::kMaxDims, "at most " << hashing::kMaxDims << " dimensions");
  hashing::ArrayView v;
  v.data = x.data();
  v.type = static_cast<hashing::ElemType>(type);
  v.ndim = int(x.ndim());
  for (int k = 0; k < v.ndim; ++k) {
    v.shape[k] = x.shape(k);
    v.stride_bytes[k] = x.strides(k);
  }
  const hashing::Quant q = make_quant(mode, mantissa_bits, grid);
  Digest d;
  {
    py::gil_scoped_release release;
    uint64_t nwords = 0;
    Digest sum = hashing::hash_stream_cpu(v, q, seed, threads, &nwords, force_scalar);
    d = hashing::final_digest(sum, nwords, header.data(), int64_t(header.size()), seed);
  }
  return digest_bytes(d);
}

py::bytes hash_bytes(py::buffer b, const std::vector<uint64_t>& header, uint64_t seed, int threads) {
  py::buffer_info info = b.request();
  EVOFORGE_CHECK(info.ndim <= 1 || info.strides.empty() ||
                     info.strides.back() == info.itemsize,
                 "hash_bytes needs a contiguous buffer");
  const int64_t nbytes = int64_t(info.size) * int64_t(info.itemsize);
  const void* p = info.ptr;
  Digest d;
  {
    py::gil_scoped_release release;
    uint64_t nwords = 0;
    Digest sum = hashing::hash_bytes_stream_cpu(p, nbytes, seed, threads, &nwords);
    d = hashing::final_digest(sum, nwords, header.data(), int64_t(header.size()), seed);
  }
  return digest_bytes(d);
}

// Streaming state: absorb 64-bit words into a 16-byte state (hashing::absorb).
py::bytes hash_fold(const std::string& state, const std::vector<uint64_t>& words) {
  Digest d = digest_from_bytes(state);
  for (uint64_t w : words) hashing::absorb(d.lo, d.hi, w);
  return digest_bytes(d);
}

py::bytes hash_fold_digest(const std::string& state, uint64_t tag, const std::string& item) {
  Digest d = digest_from_bytes(state);
  Digest it = digest_from_bytes(item);
  hashing::absorb(d.lo, d.hi, tag);
  hashing::absorb(d.lo, d.hi, it.lo);
  hashing::absorb(d.lo, d.hi, it.hi);
  return digest_bytes(d);
}

py::bytes hash_state_init(uint64_t seed) {
  Digest d{hashing::splitmix64(seed ^ 0x6c62272e07bb0142ULL), hashing::splitmix64(seed + 0x62b821756295c58dULL)};
  hashing::perm128(d.lo, d.hi);
  return digest_bytes(d);
}

py::bytes hash_state_final(const std::string& state, uint64_t count) {
  Digest d = digest_from_bytes(state);
  hashing::absorb(d.lo, d.hi, count);
  hashing::perm128(d.lo, d.hi);
  hashing::perm128(d.lo, d.hi);
  return digest_bytes(d);
}

// The final digest from a chunk sum (the CUDA path computes the sum on the device).
py::bytes hash_finalize(const std::string& sum, uint64_t nwords, const std::vector<uint64_t>& header,
                        uint64_t seed) {
  Digest d = hashing::final_digest(digest_from_bytes(sum), nwords, header.data(),
                                   int64_t(header.size()), seed);
  return digest_bytes(d);
}

}  // namespace

void register_hashing(py::module_& m) {
  m.def("hash_array", &hash_array, py::arg("x"), py::arg("type"), py::arg("mode"),
        py::arg("mantissa_bits"), py::arg("grid"), py::arg("header"), py::arg("seed"),
        py::arg("threads") = 0, py::arg("force_scalar") = false);
  m.def("hash_bytes", &hash_bytes, py::arg("data"), py::arg("header"), py::arg("seed"),
        py::arg("threads") = 0);
  m.def("hash_fold", &hash_fold, py::arg("state"), py::arg("words"));
  m.def("hash_fold_digest", &hash_fold_digest, py::arg("state"), py::arg("tag"), py::arg("item"));
  m.def("hash_state_init", &hash_state_init, py::arg("seed"));
  m.def("hash_state_final", &hash_state_final, py::arg("state"), py::arg("count"));
  m.def("hash_finalize", &hash_finalize, py::arg("sum"), py::arg("nwords"), py::arg("header"),
        py::arg("seed"));
  m.def("hash_cpu_has_avx2", &hashing::cpu_has_avx2);
  m.attr("HASH_CHUNK_BYTES") = py::int_(hashing::kChunkWords * 8);
}

}  // namespace evoforge
