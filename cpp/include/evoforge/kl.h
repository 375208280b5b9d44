// Fused KL-divergence fitness: KL(teacher || student) of next-token distributions, one pass over
// each student row. Torch- and pybind-free.
//
// Teacher, full vocabulary (computed once by kl_teacher_full):
//   w[t, i]  float16 bits of p[t, i] * 2^15 (p = softmax of the teacher row, computed in float64;
//            entries below about 2^-39 round to 0 and leave the distribution),
//   norm[t]  sum_i w[t, i] (float64, exact), the teacher's distribution is p~ = w / norm,
//   cross[t] sum_i p~[t, i] * log p[t, i] (float64; log p exact from the logits),
//   pivot[t] argmax_i of the teacher row (first on ties); the student is shifted by its value
//            there so that large logits do not cancel.
// KL[t] = cross[t] - sum_i p~[t, i] * log q[t, i],  log q = log_softmax(student row).
//
// Teacher, top K: idx[t, k] the K largest teacher logits (descending, ties by index), w[t, k]
// float32 p renormalised over those K, norm and cross as above; the student is renormalised over
// the same K indices.
//
// Student rows r = 0..R-1 use teacher row r % T (R = B * T for a batch of candidates). Each row's
// KL is computed by one thread alone, so results do not depend on the thread count.
// Student -inf where the teacher weight is > 0 gives +inf; NaN or +inf in a student row gives NaN
// in that row (the caller reports it).
#pragma once

#include <cstdint>

namespace evoforge {
namespace kl {

enum class Dtype { f32, bf16 };

/// Full-vocabulary teacher from logits [T, V]. Throws std::invalid_argument for a row holding NaN
/// or +inf or only -inf. Outputs: w [T*V] (float16 bits), norm, cross [T], pivot [T].
void teacher_full(const void* logits, Dtype dt, int64_t T, int64_t V, uint16_t* w, double* norm,
                  double* cross, int32_t* pivot, int threads, bool force_scalar = false);

/// Top-K teacher from logits [T, V], 1 <= K <= V. Outputs: idx, w [T*K], norm, cross [T] (over the
/// K renormalised), tail [T] (the teacher's probability mass outside the top K).
void teacher_topk(const void* logits, Dtype dt, int64_t T, int64_t V, int64_t K, int32_t* idx,
                  float* w, double* norm, double* cross, double* tail, int threads);

/// KL per student row against the full-vocabulary teacher; out [R].
void kl_full(const uint16_t* w, const double* norm, const double* cross, const int32_t* pivot,
             int64_t T, int64_t V, const void* student, Dtype dt, int64_t R, double* out,
             int threads, bool force_scalar = false);

/// KL per student row against the top-K teacher; out [R].
void kl_topk(const int32_t* idx, const float* w, const double* norm, const double* cross,
             int64_t T, int64_t V, int64_t K, const void* student, Dtype dt, int64_t R,
             double* out, int threads);

/// KL per student row against the top-K teacher plus one tail bin (the teacher's mass outside its
/// top K against the student's); the student's probabilities are its full softmax; out [R].
void kl_topk_tail(const int32_t* idx, const float* w, const double* norm, const double* cross,
                  const double* tail, int64_t T, int64_t V, int64_t K, const void* student, Dtype dt,
                  int64_t R, double* out, int threads, bool force_scalar = false);

/// True when the AVX2+FMA+F16C path is compiled in and this CPU runs it.
bool cpu_has_avx2();

/// IEEE half <-> float, round to nearest even (the scalar path's conversions).
uint16_t half_from_float(float f);
float float_from_half(uint16_t h);

}  // namespace kl
}  // namespace evoforge
