// Bindings for the sparse linear-layer kernels. The Python layer (evoforge/layers/sparse.py)
// validates dtypes, shapes and contiguity; here every array is checked again (so a bad call raises
// instead of reading out of bounds), the buffers mapped, the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "evoforge/common.h"
#include "evoforge/sparse.h"

namespace py = pybind11;

namespace evoforge {
namespace {

// The kernels place the t-th set bit of a row at column 8 * byte + bit: a bit past K would write
// (or read) outside the row, so it is refused here rather than trusted.
void check_mask_tail(const uint8_t* mp, int64_t N, int64_t K) {
  if (K % 8 == 0) return;
  const int64_t KB = (K + 7) / 8;
  for (int64_t n = 0; n < N; ++n)
    EVOFORGE_CHECK((mp[n * KB + KB - 1] >> (K % 8)) == 0,
                   "mask has bits set past in_features = " << K << " (row " << n << ")");
}

using sparse::QuantValues;
using sparse::Values;

// The array's data if it has the wanted kind/size and is C-contiguous, else ValueError naming it.
template <typename T>
const T* data_of(const py::array& a, const char* name, char kind, std::initializer_list<int64_t> shape) {
  EVOFORGE_CHECK(a.dtype().kind() == kind && a.itemsize() == sizeof(T),
                 name << " has dtype " << std::string(py::str(a.dtype())) << ", expected kind '" << kind << "' of "
                      << sizeof(T) << " bytes");
  EVOFORGE_CHECK(a.flags() & py::array::c_style, name << " must be C-contiguous");
  EVOFORGE_CHECK(a.ndim() == int64_t(shape.size()), name << " must be " << shape.size() << "-D, got " << a.ndim() << "-D");
  int i = 0;
  for (int64_t s : shape) {
    EVOFORGE_CHECK(s < 0 || a.shape(i) == s, name << " has shape[" << i << "] = " << a.shape(i) << ", expected " << s);
    ++i;
  }
  return static_cast<const T*>(a.data());
}

struct Inputs {
  const float* x;
  int64_t B;
  const float* bias = nullptr;
};

Inputs inputs(const py::array& x, int64_t K, int64_t N, const py::object& bias) {
  Inputs in{data_of<float>(x, "x", 'f', {-1, K}), x.ndim() == 2 ? int64_t(x.shape(0)) : 0};
  EVOFORGE_CHECK(in.B >= 1, "x must have at least one row");
  if (!bias.is_none()) in.bias = data_of<float>(bias.cast<py::array>(), "bias", 'f', {N});
  return in;
}

// Values: float32 / float16 [count] or [N, count/N]; or quantised (packed, scales, zeros).
struct ValueArgs {
  Values vt = Values::f32;
  const void* values = nullptr;
  QuantValues q;
};

ValueArgs value_args(const py::object& values, const py::object& packed, const py::object& scales,
                     const py::object& zeros, int bits, int64_t group_size, int64_t N, int64_t count,
                     int64_t group_span, int64_t packed_bytes_per_row, bool per_row) {
  ValueArgs v;
  if (!values.is_none()) {
    EVOFORGE_CHECK(packed.is_none(), "give either float values or quantised codes, not both");
    py::array a = values.cast<py::array>();
    const int64_t n = per_row ? N : 1, c = per_row ? count / N : count;
    if (a.itemsize() == 4) {
      v.vt = Values::f32;
      v.values = per_row ? data_of<float>(a, "values", 'f', {n, c}) : data_of<float>(a, "values", 'f', {c});
    } else {
      v.vt = Values::f16;
      v.values = per_row ? data_of<uint16_t>(a, "values", 'f', {n, c}) : data_of<uint16_t>(a, "values", 'f', {c});
    }
    return v;
  }
  EVOFORGE_CHECK(!packed.is_none() && !scales.is_none(), "quantised values need packed codes and scales");
  EVOFORGE_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8, "bits must be 2, 3, 4 or 8, got " << bits);
  EVOFORGE_CHECK(group_size == 0 || (group_size >= 32 && group_size % 32 == 0),
                 "group_size must be 0 (per row) or a multiple of 32, got " << group_size);
  v.vt = Values::quant;
  v.q.bits = bits;
  v.q.group_size = group_size;
  v.q.groups = group_size > 0 ? (group_span + group_size - 1) / group_size : 1;
  py::array p = packed.cast<py::array>();
  if (per_row)
    v.q.packed = data_of<uint8_t>(p, "packed", 'u', {N, packed_bytes_per_row});
  else
    v.q.packed = data_of<uint8_t>(p, "packed", 'u', {(count + 31) / 32 * 4 * bits});
  v.q.scales = data_of<uint16_t>(scales.cast<py::array>(), "scales", 'f', {N, v.q.groups});
  if (!zeros.is_none()) v.q.zeros = data_of<uint16_t>(zeros.cast<py::array>(), "zeros", 'f', {N, v.q.groups});
  return v;
}

py::array_t<float> unstructured_impl(const py::array& x, const py::array& mask, const py::array& row_ptr,
                                     int64_t in_features, const py::object& values, const py::object& packed,
                                     const py::object& scales, const py::object& zeros, int bits, int64_t group_size,
                                     const py::object& bias, int threads, int max_isa) {
  const int64_t K = in_features;
  EVOFORGE_CHECK(K >= 1, "in_features must be >= 1");
  EVOFORGE_CHECK(mask.ndim() == 2, "mask must be 2-D [N, ceil(K/8)]");
  const int64_t N = mask.shape(0), KB = (K + 7) / 8;
  const uint8_t* mp = data_of<uint8_t>(mask, "mask", 'u', {N, KB});
  const int64_t* rp = data_of<int64_t>(row_ptr, "row_ptr", 'i', {N + 1});
  EVOFORGE_CHECK(N >= 1, "the weight must have at least one row");
  EVOFORGE_CHECK(rp[0] == 0, "row_ptr[0] must be 0");
  for (int64_t n = 0; n < N; ++n)
    EVOFORGE_CHECK(rp[n + 1] >= rp[n] && rp[n + 1] - rp[n] <= K,
                   "row_ptr must be non-decreasing with at most K values per row (row " << n << ")");
  check_mask_tail(mp, N, K);
  const int64_t nnz = rp[N];
  Inputs in = inputs(x, K, N, bias);
  ValueArgs v = value_args(values, packed, scales, zeros, bits, group_size, N, nnz, K, 0, false);
  py::array_t<float> y({in.B, N});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    sparse::unstructured_matmul(in.x, in.B, K, mp, rp, N, v.vt, v.values, &v.q, in.bias, yp, threads, max_isa);
  }
  return y;
}

py::array_t<float> sparse24_impl(const py::array& x, const py::array& meta, int64_t in_features,
                                 const py::object& values, const py::object& packed, const py::object& scales,
                                 const py::object& zeros, int bits, int64_t group_size, const py::object& bias,
                                 int threads, int max_isa) {
  const int64_t K = in_features;
  EVOFORGE_CHECK(K >= 1, "in_features must be >= 1");
  EVOFORGE_CHECK(meta.ndim() == 2, "meta must be 2-D [N, Kp/8]");
  const int64_t N = meta.shape(0), Kp = (K + 31) / 32 * 32, KV = Kp / 2;
  EVOFORGE_CHECK(N >= 1, "the weight must have at least one row");
  const uint8_t* mp = data_of<uint8_t>(meta, "meta", 'u', {N, Kp / 8});
  Inputs in = inputs(x, K, N, bias);
  ValueArgs v = value_args(values, packed, scales, zeros, bits, group_size, N, N * KV, KV,
                           (KV + 31) / 32 * 4 * bits, true);
  py::array_t<float> y({in.B, N});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    sparse::sparse24_matmul(in.x, in.B, K, mp, N, v.vt, v.values, &v.q, in.bias, yp, threads, max_isa);
  }
  return y;
}

// The dense output: a new array, or `out` (float32 [N, K], C-contiguous, writeable) reused.
py::array_t<float> dense_out(const py::object& out, int64_t N, int64_t K) {
  if (out.is_none()) return py::array_t<float>({N, K});
  py::array a = out.cast<py::array>();
  data_of<float>(a, "out", 'f', {N, K});
  EVOFORGE_CHECK(a.writeable(), "out must be writeable");
  return py::array_t<float>(a);
}

py::array_t<float> unstructured_dense_impl(const py::array& mask, const py::array& row_ptr, int64_t in_features,
                                           const py::object& values, const py::object& packed,
                                           const py::object& scales, const py::object& zeros, int bits,
                                           int64_t group_size, int threads, const py::object& out) {
  const int64_t K = in_features;
  EVOFORGE_CHECK(K >= 1, "in_features must be >= 1");
  EVOFORGE_CHECK(mask.ndim() == 2 && mask.shape(0) >= 1, "mask must be 2-D [N, ceil(K/8)] with N >= 1");
  const int64_t N = mask.shape(0);
  const uint8_t* mp = data_of<uint8_t>(mask, "mask", 'u', {N, (K + 7) / 8});
  const int64_t* rp = data_of<int64_t>(row_ptr, "row_ptr", 'i', {N + 1});
  EVOFORGE_CHECK(rp[0] == 0, "row_ptr[0] must be 0");
  for (int64_t n = 0; n < N; ++n)
    EVOFORGE_CHECK(rp[n + 1] >= rp[n] && rp[n + 1] - rp[n] <= K,
                   "row_ptr must be non-decreasing with at most K values per row (row " << n << ")");
  check_mask_tail(mp, N, K);
  ValueArgs v = value_args(values, packed, scales, zeros, bits, group_size, N, rp[N], K, 0, false);
  py::array_t<float> w = dense_out(out, N, K);
  float* wp = w.mutable_data();
  {
    py::gil_scoped_release release;
    sparse::unstructured_to_dense(K, mp, rp, N, v.vt, v.values, &v.q, wp, threads);
  }
  return w;
}

py::array_t<float> sparse24_dense_impl(const py::array& meta, int64_t in_features, const py::object& values,
                                       const py::object& packed, const py::object& scales, const py::object& zeros,
                                       int bits, int64_t group_size, int threads, const py::object& out) {
  const int64_t K = in_features;
  EVOFORGE_CHECK(K >= 1, "in_features must be >= 1");
  EVOFORGE_CHECK(meta.ndim() == 2 && meta.shape(0) >= 1, "meta must be 2-D [N, Kp/8] with N >= 1");
  const int64_t N = meta.shape(0), Kp = (K + 31) / 32 * 32, KV = Kp / 2;
  const uint8_t* mp = data_of<uint8_t>(meta, "meta", 'u', {N, Kp / 8});
  ValueArgs v = value_args(values, packed, scales, zeros, bits, group_size, N, N * KV, KV,
                           (KV + 31) / 32 * 4 * bits, true);
  py::array_t<float> w = dense_out(out, N, K);
  float* wp = w.mutable_data();
  {
    py::gil_scoped_release release;
    sparse::sparse24_to_dense(K, mp, N, v.vt, v.values, &v.q, wp, threads);
  }
  return w;
}

}  // namespace

void register_sparse(py::module_& m) {
  m.def("sparse_unstructured_matmul", &unstructured_impl, py::arg("x"), py::arg("mask"), py::arg("row_ptr"),
        py::arg("in_features"), py::arg("values") = py::none(), py::arg("packed") = py::none(),
        py::arg("scales") = py::none(), py::arg("zeros") = py::none(), py::arg("bits") = 4,
        py::arg("group_size") = 0, py::arg("bias") = py::none(), py::arg("threads") = 0,
        py::arg("max_isa") = 2);
  m.def("sparse24_matmul", &sparse24_impl, py::arg("x"), py::arg("meta"), py::arg("in_features"),
        py::arg("values") = py::none(), py::arg("packed") = py::none(), py::arg("scales") = py::none(),
        py::arg("zeros") = py::none(), py::arg("bits") = 4, py::arg("group_size") = 0,
        py::arg("bias") = py::none(), py::arg("threads") = 0, py::arg("max_isa") = 2);
  m.def("sparse_unstructured_dense", &unstructured_dense_impl, py::arg("mask"), py::arg("row_ptr"),
        py::arg("in_features"), py::arg("values") = py::none(), py::arg("packed") = py::none(),
        py::arg("scales") = py::none(), py::arg("zeros") = py::none(), py::arg("bits") = 4,
        py::arg("group_size") = 0, py::arg("threads") = 0, py::arg("out") = py::none());
  m.def("sparse24_dense", &sparse24_dense_impl, py::arg("meta"), py::arg("in_features"),
        py::arg("values") = py::none(), py::arg("packed") = py::none(), py::arg("scales") = py::none(),
        py::arg("zeros") = py::none(), py::arg("bits") = 4, py::arg("group_size") = 0, py::arg("threads") = 0,
        py::arg("out") = py::none());
  m.def("sparse_best_isa", &sparse::best_isa);
}

}  // namespace evoforge
