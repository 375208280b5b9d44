// Typed register programs (AutoML-Zero style) and their interpreter. Torch- and pybind-free; the
// Python wrapper (evoforge/interpreter.py) checks every argument first, and check_code below checks
// the instructions again, so that nothing out of range is ever read or written.
//
// Registers: n_scalar scalars s[i], n_vector vectors v[i] of length dim, n_matrix matrices m[i] of
// dim x dim (row-major), all of the call's type T (float or double). An instruction is four int32
// (op, out, in1, in2) and a double immediate `imm` (read by the *_const ops, converted to T with one
// rounding, and by v_get as an element index, see element_index). Every op overwrites the whole of
// its output register, and its output may be one of its inputs. Unused operand fields are never read.
//
// Semantics, in T, IEEE (no exceptions, no fast-math, no contraction: this file is compiled with
// -ffp-contract=off):
//   + - * / : the IEEE operations; abs = fabs; neg = -x; recip = T(1) / x; sqrt correctly rounded;
//   sin, cos, tan, arcsin, arccos, arctan, exp, log: the C library's functions of T (sinf / sin, ...);
//   min(a, b) = a if (a < b or a is NaN) else b;  max(a, b) = a if (a > b or a is NaN) else b
//     (NaN propagates; min(+0, -0) = -0, min(-0, +0) = +0);
//   heaviside(x) = 1 if x > 0 else 0 (NaN -> 0);
//   v_get: s_out = v_in[k], k = element_index(imm, dim) = floor(|imm|) mod dim for a finite imm, 0 for
//     +-inf or NaN (computed in double, exactly: the index does not depend on T);
//   reductions start from +0 and add in index order (j = 0 .. dim-1; matrices row-major):
//     dot = sum a_j b_j, sum = sum a_j, mean = sum / T(dim), norm = sqrt(sum a_j a_j),
//     m_norm = sqrt(sum m_ij m_ij), m_mean = sum m_ij / T(dim * dim),
//     matvec y_i = sum_j m_ij v_j, matmul c_ik = sum_j a_ij b_jk, each started from +0;
//   so that every result is independent of the thread count and of how examples are blocked.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace evoforge {
namespace interp {

/// Register types of an operand: none (the field is not read), scalar, vector, matrix.
enum RegType : char { kNone = 0, kScalar = 's', kVector = 'v', kMatrix = 'm' };

struct OpInfo {
  const char* name;
  char out, in1, in2;  // RegType of each operand
  bool imm;            // reads the immediate
};

// The op table, in op-id order (the ids are part of the format of stored programs: append only).
#define EVOFORGE_OPS(X)                                                                        \
  X(noop, 0, 0, 0, false)                                                                      \
  X(s_add, 's', 's', 's', false) X(s_sub, 's', 's', 's', false) X(s_mul, 's', 's', 's', false) \
  X(s_div, 's', 's', 's', false) X(s_min, 's', 's', 's', false) X(s_max, 's', 's', 's', false) \
  X(s_abs, 's', 's', 0, false) X(s_neg, 's', 's', 0, false) X(s_recip, 's', 's', 0, false)     \
  X(s_sin, 's', 's', 0, false) X(s_cos, 's', 's', 0, false) X(s_tan, 's', 's', 0, false)       \
  X(s_arcsin, 's', 's', 0, false) X(s_arccos, 's', 's', 0, false)                              \
  X(s_arctan, 's', 's', 0, false) X(s_exp, 's', 's', 0, false) X(s_log, 's', 's', 0, false)    \
  X(s_sqrt, 's', 's', 0, false) X(s_heaviside, 's', 's', 0, false)                             \
  X(s_const, 's', 0, 0, true)                                                                  \
  X(v_add, 'v', 'v', 'v', false) X(v_sub, 'v', 'v', 'v', false) X(v_mul, 'v', 'v', 'v', false) \
  X(v_div, 'v', 'v', 'v', false) X(v_min, 'v', 'v', 'v', false) X(v_max, 'v', 'v', 'v', false) \
  X(v_abs, 'v', 'v', 0, false) X(v_recip, 'v', 'v', 0, false) X(v_exp, 'v', 'v', 0, false)     \
  X(v_log, 'v', 'v', 0, false) X(v_heaviside, 'v', 'v', 0, false)                              \
  X(v_scale, 'v', 's', 'v', false) X(v_bcast, 'v', 's', 0, false) X(v_const, 'v', 0, 0, true)  \
  X(v_dot, 's', 'v', 'v', false) X(v_norm, 's', 'v', 0, false) X(v_mean, 's', 'v', 0, false)   \
  X(v_sum, 's', 'v', 0, false)                                                                 \
  X(m_add, 'm', 'm', 'm', false) X(m_sub, 'm', 'm', 'm', false) X(m_mul, 'm', 'm', 'm', false) \
  X(m_scale, 'm', 's', 'm', false) X(m_matvec, 'v', 'm', 'v', false)                           \
  X(m_outer, 'm', 'v', 'v', false) X(m_matmul, 'm', 'm', 'm', false)                           \
  X(m_transpose, 'm', 'm', 0, false) X(m_abs, 'm', 'm', 0, false) X(m_norm, 's', 'm', 0, false) \
  X(m_mean, 's', 'm', 0, false) X(m_const, 'm', 0, 0, true)                                    \
  X(v_get, 's', 'v', 0, true)

enum Op : int32_t {
#define EVOFORGE_OP_ENUM(name, o, a, b, imm) name,
  EVOFORGE_OPS(EVOFORGE_OP_ENUM)
#undef EVOFORGE_OP_ENUM
      kNumOps
};

inline constexpr OpInfo kOps[kNumOps] = {
#define EVOFORGE_OP_INFO(name, o, a, b, imm) \
  {#name, static_cast<char>(o), static_cast<char>(a), static_cast<char>(b), imm},
    EVOFORGE_OPS(EVOFORGE_OP_INFO)
#undef EVOFORGE_OP_INFO
};

/// The element v_get reads: floor(|imm|) mod dim for a finite imm (exact: fmod of an integer-valued
/// double), 0 for +-inf and NaN; always in [0, dim) for dim >= 1.
inline int64_t element_index(double imm, int64_t dim) {
  if (!std::isfinite(imm) || dim <= 1) return 0;
  return static_cast<int64_t>(std::fmod(std::floor(std::fabs(imm)), static_cast<double>(dim)));
}

/// Register files and the register length.
struct Shape {
  int64_t n_scalar = 0, n_vector = 0, n_matrix = 0, dim = 1;
  /// Elements of one register file (one example).
  int64_t elements() const { return n_scalar + n_vector * dim + n_matrix * dim * dim; }
};

/// One batch of P programs of L instructions each: code [P, L, 4] int32, imm [P, L] double.
struct Code {
  const int32_t* code = nullptr;
  const double* imm = nullptr;
  int64_t P = 0, L = 0;
};

/// Throws std::invalid_argument naming `what`, the program and the instruction when an op id is
/// out of range or an operand is outside the register file of its type.
void check_code(const Code& c, const Shape& s, const char* what);

/// out[p, e] = s1 after program p ran on example e alone (registers zeroed, then s0 = inputs[e] when
/// !vector_input, or v0 = inputs[e, :] ([E, dim]) when vector_input). Examples are run in blocks of
/// lanes (one instruction over a block at a time), programs x blocks in parallel.
template <typename T>
void run_function_cpu(const Code& code, const Shape& s, const T* inputs, int64_t E, bool vector_input, T* out,
                      int num_threads);

/// AutoML-Zero's protocol for every (program p, task t), in parallel over the pairs: registers
/// zeroed; setup once; `epochs` times over n = 0 .. N-1: v0 = train_x[t, n], predict,
/// train_pred[p, t, n] = s1, s0 = train_y[t, n], learn; then for m = 0 .. M-1: v0 = valid_x[t, m],
/// predict, valid_pred[p, t, m] = s1. train_x [T, N, dim], train_y [T, N], valid_x [T, M, dim].
template <typename T>
void run_learner_cpu(const Code& setup, const Code& predict, const Code& learn, const Shape& s, const T* train_x,
                     const T* train_y, const T* valid_x, int64_t n_tasks, int64_t N, int64_t M, int64_t epochs,
                     T* train_pred, T* valid_pred, int num_threads);

/// The canonical forms of B programs of C components each (1: a function, 3: setup, predict, learn),
/// as Program.canonical defines them: instructions that cannot reach s1 removed (liveness iterated
/// across components for a learner), registers renamed per type in order of first use (s0, s1, v0
/// kept), unused fields and immediates zeroed, a v_get's immediate replaced by its element index.
/// code [N, 4] and imm [N] hold the components one after the other, lengths [B, C] their lengths;
/// the result is appended to code_out / imm_out in the same layout, its lengths in lengths_out [B, C].
/// Throws std::invalid_argument for an invalid instruction (check_code).
void canonical_programs(const int32_t* code, const double* imm, const int64_t* lengths, int64_t B, int64_t C,
                        const Shape& s, std::vector<int32_t>& code_out, std::vector<double>& imm_out,
                        int64_t* lengths_out);

}  // namespace interp
}  // namespace evoforge
