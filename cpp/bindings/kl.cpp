// Bindings for the fused KL kernels. The Python layer (evoforge/kl.py) validates dtypes, shapes and
// contiguity and views bfloat16 as uint16; here we check shapes again, map buffers, release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/kl.h"

namespace py = pybind11;

namespace evoforge {
namespace {

template <typename S, kl::Dtype D>
py::tuple teacher_full_impl(CArray<S> logits, int threads, bool force_scalar) {
  EVOFORGE_CHECK(logits.ndim() == 2, "teacher logits must be 2-D [T, V]");
  const int64_t T = logits.shape(0), V = logits.shape(1);
  EVOFORGE_CHECK(T >= 1 && V >= 1, "teacher logits must have T >= 1 and V >= 1");
  CArray<uint16_t> w({T, V});
  CArray<double> norm(T), cross(T);
  CArray<int32_t> pivot(T);
  const void* x = logits.data();
  uint16_t* wp = w.mutable_data();
  double *np_ = norm.mutable_data(), *cp = cross.mutable_data();
  int32_t* pp = pivot.mutable_data();
  {
    py::gil_scoped_release release;
    kl::teacher_full(x, D, T, V, wp, np_, cp, pp, threads, force_scalar);
  }
  return py::make_tuple(w, norm, cross, pivot);
}

template <typename S, kl::Dtype D>
py::tuple teacher_topk_impl(CArray<S> logits, int64_t K, int threads) {
  EVOFORGE_CHECK(logits.ndim() == 2, "teacher logits must be 2-D [T, V]");
  const int64_t T = logits.shape(0), V = logits.shape(1);
  EVOFORGE_CHECK(T >= 1 && V >= 1, "teacher logits must have T >= 1 and V >= 1");
  EVOFORGE_CHECK(K >= 1 && K <= V, "top_k must lie in [1, V=" << V << "], got " << K);
  CArray<int32_t> idx({T, K});
  CArray<float> w({T, K});
  CArray<double> norm(T), cross(T), tail(T);
  const void* x = logits.data();
  int32_t* ip = idx.mutable_data();
  float* wp = w.mutable_data();
  double *np_ = norm.mutable_data(), *cp = cross.mutable_data(), *tp = tail.mutable_data();
  {
    py::gil_scoped_release release;
    kl::teacher_topk(x, D, T, V, K, ip, wp, np_, cp, tp, threads);
  }
  return py::make_tuple(idx, w, norm, cross, tail);
}

void check_rows(const CArray<double>& norm, const CArray<double>& cross, int64_t T) {
  EVOFORGE_CHECK(norm.ndim() == 1 && norm.shape(0) == T && cross.ndim() == 1 && cross.shape(0) == T,
                 "teacher norm/cross must have shape [" << T << "]");
}

template <typename S, kl::Dtype D>
CArray<double> kl_full_impl(CArray<uint16_t> w, CArray<double> norm, CArray<double> cross, CArray<int32_t> pivot,
                            CArray<S> student, int threads, bool force_scalar) {
  EVOFORGE_CHECK(w.ndim() == 2, "teacher weights must be 2-D [T, V]");
  const int64_t T = w.shape(0), V = w.shape(1);
  check_rows(norm, cross, T);
  EVOFORGE_CHECK(pivot.ndim() == 1 && pivot.shape(0) == T, "teacher pivot must have shape [" << T << "]");
  EVOFORGE_CHECK(student.ndim() == 2 && student.shape(1) == V, "student logits must be [R, V=" << V << "]");
  const int64_t R = student.shape(0);
  for (int64_t t = 0; t < T; ++t)
    EVOFORGE_CHECK(pivot.data()[t] >= 0 && pivot.data()[t] < V, "teacher pivot out of range at row " << t);
  CArray<double> out(R);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    kl::kl_full(w.data(), norm.data(), cross.data(), pivot.data(), T, V, student.data(), D, R, o, threads,
                force_scalar);
  }
  return out;
}

template <typename S, kl::Dtype D>
CArray<double> kl_topk_impl(CArray<int32_t> idx, CArray<float> w, CArray<double> norm, CArray<double> cross,
                            CArray<S> student, int threads) {
  EVOFORGE_CHECK(idx.ndim() == 2 && w.ndim() == 2 && idx.shape(0) == w.shape(0) && idx.shape(1) == w.shape(1),
                 "teacher indices and weights must both be [T, K]");
  const int64_t T = idx.shape(0), K = idx.shape(1);
  check_rows(norm, cross, T);
  EVOFORGE_CHECK(student.ndim() == 2, "student logits must be 2-D [R, V]");
  const int64_t R = student.shape(0), V = student.shape(1);
  const int32_t* ip = idx.data();
  for (int64_t i = 0; i < T * K; ++i)
    EVOFORGE_CHECK(ip[i] >= 0 && ip[i] < V, "teacher index " << ip[i] << " out of range for V=" << V);
  CArray<double> out(R);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    kl::kl_topk(ip, w.data(), norm.data(), cross.data(), T, V, K, student.data(), D, R, o, threads);
  }
  return out;
}

template <typename S, kl::Dtype D>
CArray<double> kl_topk_tail_impl(CArray<int32_t> idx, CArray<float> w, CArray<double> norm, CArray<double> cross,
                                 CArray<double> tail, CArray<S> student, int threads, bool force_scalar) {
  EVOFORGE_CHECK(idx.ndim() == 2 && w.ndim() == 2 && idx.shape(0) == w.shape(0) && idx.shape(1) == w.shape(1),
                 "teacher indices and weights must both be [T, K]");
  const int64_t T = idx.shape(0), K = idx.shape(1);
  check_rows(norm, cross, T);
  EVOFORGE_CHECK(tail.ndim() == 1 && tail.shape(0) == T, "teacher tail must have shape [" << T << "]");
  EVOFORGE_CHECK(student.ndim() == 2, "student logits must be 2-D [R, V]");
  const int64_t R = student.shape(0), V = student.shape(1);
  const int32_t* ip = idx.data();
  for (int64_t i = 0; i < T * K; ++i)
    EVOFORGE_CHECK(ip[i] >= 0 && ip[i] < V, "teacher index " << ip[i] << " out of range for V=" << V);
  for (int64_t t = 0; t < T; ++t)
    EVOFORGE_CHECK(tail.data()[t] >= 0.0 && tail.data()[t] < 1.0, "teacher tail mass out of [0, 1) at row " << t);
  CArray<double> out(R);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    kl::kl_topk_tail(ip, w.data(), norm.data(), cross.data(), tail.data(), T, V, K, student.data(), D, R, o, threads,
                     force_scalar);
  }
  return out;
}

}  // namespace

void register_kl(py::module_& m) {
  using kl::Dtype;
  m.def("kl_teacher_full_f32", &teacher_full_impl<float, Dtype::f32>, py::arg("logits").noconvert(),
        py::arg("threads") = 0, py::arg("force_scalar") = false);
  m.def("kl_teacher_full_bf16", &teacher_full_impl<uint16_t, Dtype::bf16>, py::arg("logits").noconvert(),
        py::arg("threads") = 0, py::arg("force_scalar") = false);
  m.def("kl_teacher_topk_f32", &teacher_topk_impl<float, Dtype::f32>, py::arg("logits").noconvert(),
        py::arg("k"), py::arg("threads") = 0);
  m.def("kl_teacher_topk_bf16", &teacher_topk_impl<uint16_t, Dtype::bf16>, py::arg("logits").noconvert(),
        py::arg("k"), py::arg("threads") = 0);
  m.def("kl_full_f32", &kl_full_impl<float, Dtype::f32>, py::arg("w").noconvert(), py::arg("norm").noconvert(),
        py::arg("cross").noconvert(), py::arg("pivot").noconvert(), py::arg("student").noconvert(),
        py::arg("threads") = 0, py::arg("force_scalar") = false);
  m.def("kl_full_bf16", &kl_full_impl<uint16_t, Dtype::bf16>, py::arg("w").noconvert(),
        py::arg("norm").noconvert(), py::arg("cross").noconvert(), py::arg("pivot").noconvert(),
        py::arg("student").noconvert(), py::arg("threads") = 0, py::arg("force_scalar") = false);
  m.def("kl_topk_f32", &kl_topk_impl<float, Dtype::f32>, py::arg("idx").noconvert(), py::arg("w").noconvert(),
        py::arg("norm").noconvert(), py::arg("cross").noconvert(), py::arg("student").noconvert(),
        py::arg("threads") = 0);
  m.def("kl_topk_bf16", &kl_topk_impl<uint16_t, Dtype::bf16>, py::arg("idx").noconvert(),
        py::arg("w").noconvert(), py::arg("norm").noconvert(), py::arg("cross").noconvert(),
        py::arg("student").noconvert(), py::arg("threads") = 0);
  m.def("kl_topk_tail_f32", &kl_topk_tail_impl<float, Dtype::f32>, py::arg("idx").noconvert(),
        py::arg("w").noconvert(), py::arg("norm").noconvert(), py::arg("cross").noconvert(),
        py::arg("tail").noconvert(), py::arg("student").noconvert(), py::arg("threads") = 0,
        py::arg("force_scalar") = false);
  m.def("kl_topk_tail_bf16", &kl_topk_tail_impl<uint16_t, Dtype::bf16>, py::arg("idx").noconvert(),
        py::arg("w").noconvert(), py::arg("norm").noconvert(), py::arg("cross").noconvert(),
        py::arg("tail").noconvert(), py::arg("student").noconvert(), py::arg("threads") = 0,
        py::arg("force_scalar") = false);
  m.def("kl_cpu_has_avx2", &kl::cpu_has_avx2);
}

}  // namespace evoforge
