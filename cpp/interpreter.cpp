// The register-program interpreter (see evoforge/interpreter.h for the semantics). Compiled with
// -ffp-contract=off: every result is the IEEE operation of the header, bit for bit, so a numpy
// reference that does the same operations in the same order gives the same bits.
//
// Layout of one register file for a block of `lanes` examples (structure of arrays: the examples
// are the fastest index, so one instruction is one loop over lanes x elements):
//   s[i]        at S + i lanes                                 (lanes values)
//   v[i][j]     at V + (i dim + j) lanes                       (dim x lanes values)
//   m[i][r][c]  at M + ((i dim + r) dim + c) lanes             (dim x dim x lanes values)
// followed by a temporary of dim x dim x lanes values (dim x lanes without matrices): matvec,
// matmul and transpose write there first, since the output may be an input. run_function uses up
// to kMaxLanes lanes per block; run_learner one.
#include "evoforge/interpreter.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "evoforge/common.h"

namespace evoforge {
namespace interp {
namespace {

constexpr int64_t kMaxLanes = 64;
// Elements of one block's register file (and temporary) that a block aims to stay within (32 K
// elements: 128-256 KB, in L2), so large register files get fewer lanes.
constexpr int64_t kLaneBudget = int64_t{1} << 15;

const char* type_name(char t) {
  return t == kScalar ? "scalar" : t == kVector ? "vector" : "matrix";
}

int64_t file_size(const Shape& s, char t) {
  return t == kScalar ? s.n_scalar : t == kVector ? s.n_vector : s.n_matrix;
}

template <typename T>
class Machine {
 public:
  Machine(const Shape& s, int64_t max_lanes)
      : s_(s), d_(s.dim), buf_(static_cast<size_t>(per_lane(s) * max_lanes)) {
    set_lanes(max_lanes);
  }

  /// Values per lane: the register file and the temporary (a matrix, or a vector without matrices).
  static int64_t per_lane(const Shape& s) { return s.elements() + (s.n_matrix > 0 ? s.dim * s.dim : s.dim); }

  void set_lanes(int64_t lanes) {
    nb_ = lanes;
    S_ = buf_.data();
    V_ = S_ + s_.n_scalar * nb_;
    M_ = V_ + s_.n_vector * d_ * nb_;
    tmp_ = M_ + s_.n_matrix * d_ * d_ * nb_;
  }
  int64_t lanes() const { return nb_; }

  void zero() { std::fill(S_, tmp_, T(0)); }
  T* s(int32_t i) { return S_ + i * nb_; }
  T* v(int32_t i) { return V_ + i * d_ * nb_; }
  T* m(int32_t i) { return M_ + i * d_ * d_ * nb_; }

  void run(const int32_t* code, const double* imm, int64_t L) {
    for (int64_t i = 0; i < L; ++i) exec(code + 4 * i, imm[i]);
  }

 private:
  template <typename F>
  static void map1(T* o, const T* a, int64_t n, F f) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  }
  template <typename F>
  static void map2(T* o, const T* a, const T* b, int64_t n, F f) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  }
  static void fill(T* o, int64_t n, T x) { std::fill(o, o + n, x); }
  // o[b] = sum_j a[j, b] * b[j, b] (products when `mul`, else a[j, b]), from +0, j in order.
  void reduce(T* o, const T* a, const T* b, int64_t n, bool mul) {
    const int64_t nb = nb_;
    for (int64_t l = 0; l < nb; ++l) o[l] = T(0);
    for (int64_t j = 0; j < n; ++j) {
      const T* x = a + j * nb;
      const T* y = b + j * nb;
      if (mul)
        for (int64_t l = 0; l < nb; ++l) o[l] = o[l] + x[l] * y[l];
      else
        for (int64_t l = 0; l < nb; ++l) o[l] = o[l] + x[l];
    }
  }
  void scale(T* o, const T* c, const T* x, int64_t n) {  // o[j, b] = c[b] * x[j, b]
    const int64_t nb = nb_;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < nb; ++l) o[j * nb + l] = c[l] * x[j * nb + l];
  }

  static T tmin(T a, T b) { return (a < b || a != a) ? a : b; }
  static T tmax(T a, T b) { return (a > b || a != a) ? a : b; }
  static T heav(T x) { return x > T(0) ? T(1) : T(0); }

  void exec(const int32_t* ins, double imm);

  Shape s_;
  int64_t d_;
  std::vector<T> buf_;
  int64_t nb_ = 0;
  T *S_ = nullptr, *V_ = nullptr, *M_ = nullptr, *tmp_ = nullptr;
};

template <typename T>
void Machine<T>::exec(const int32_t* ins, double imm) {
  const int32_t o = ins[1], a = ins[2], b = ins[3];
  const int64_t nb = nb_, d = d_, nv = d * nb, nm = d * d * nb;
  const T k = static_cast<T>(imm);
  switch (static_cast<Op>(ins[0])) {
    case noop: break;
    case s_add: map2(s(o), s(a), s(b), nb, [](T x, T y) { return x + y; }); break;
    case s_sub: map2(s(o), s(a), s(b), nb, [](T x, T y) { return x - y; }); break;
    case s_mul: map2(s(o), s(a), s(b), nb, [](T x, T y) { return x * y; }); break;
    case s_div: map2(s(o), s(a), s(b), nb, [](T x, T y) { return x / y; }); break;
    case s_min: map2(s(o), s(a), s(b), nb, tmin); break;
    case s_max: map2(s(o), s(a), s(b), nb, tmax); break;
    case s_abs: map1(s(o), s(a), nb, [](T x) { return std::fabs(x); }); break;
    case s_neg: map1(s(o), s(a), nb, [](T x) { return -x; }); break;
    case s_recip: map1(s(o), s(a), nb, [](T x) { return T(1) / x; }); break;
    case s_sin: map1(s(o), s(a), nb, [](T x) { return std::sin(x); }); break;
    case s_cos: map1(s(o), s(a), nb, [](T x) { return std::cos(x); }); break;
    case s_tan: map1(s(o), s(a), nb, [](T x) { return std::tan(x); }); break;
    case s_arcsin: map1(s(o), s(a), nb, [](T x) { return std::asin(x); }); break;
    case s_arccos: map1(s(o), s(a), nb, [](T x) { return std::acos(x); }); break;
    case s_arctan: map1(s(o), s(a), nb, [](T x) { return std::atan(x); }); break;
    case s_exp: map1(s(o), s(a), nb, [](T x) { return std::exp(x); }); break;
    case s_log: map1(s(o), s(a), nb, [](T x) { return std::log(x); }); break;
    case s_sqrt: map1(s(o), s(a), nb, [](T x) { return std::sqrt(x); }); break;
    case s_heaviside: map1(s(o), s(a), nb, heav); break;
    case s_const: fill(s(o), nb, k); break;
    case v_add: map2(v(o), v(a), v(b), nv, [](T x, T y) { return x + y; }); break;
    case v_sub: map2(v(o), v(a), v(b), nv, [](T x, T y) { return x - y; }); break;
    case v_mul: map2(v(o), v(a), v(b), nv, [](T x, T y) { return x * y; }); break;
    case v_div: map2(v(o), v(a), v(b), nv, [](T x, T y) { return x / y; }); break;
    case v_min: map2(v(o), v(a), v(b), nv, tmin); break;
    case v_max: map2(v(o), v(a), v(b), nv, tmax); break;
    case v_abs: map1(v(o), v(a), nv, [](T x) { return std::fabs(x); }); break;
    case v_recip: map1(v(o), v(a), nv, [](T x) { return T(1) / x; }); break;
    case v_exp: map1(v(o), v(a), nv, [](T x) { return std::exp(x); }); break;
    case v_log: map1(v(o), v(a), nv, [](T x) { return std::log(x); }); break;
    case v_heaviside: map1(v(o), v(a), nv, heav); break;
    case v_scale: scale(v(o), s(a), v(b), d); break;
    case v_bcast: {
      T* out = v(o);
      const T* x = s(a);
      for (int64_t j = 0; j < d; ++j) std::copy(x, x + nb, out + j * nb);
      break;
    }
    case v_const: fill(v(o), nv, k); break;
    case v_dot: reduce(s(o), v(a), v(b), d, true); break;
    case v_norm: {
      T* out = s(o);
      reduce(out, v(a), v(a), d, true);
      for (int64_t l = 0; l < nb; ++l) out[l] = std::sqrt(out[l]);
      break;
    }
    case v_mean: {
      T* out = s(o);
      reduce(out, v(a), nullptr, d, false);
      const T n = static_cast<T>(d);
      for (int64_t l = 0; l < nb; ++l) out[l] = out[l] / n;
      break;
    }
    case v_sum: reduce(s(o), v(a), nullptr, d, false); break;
    case m_add: map2(m(o), m(a), m(b), nm, [](T x, T y) { return x + y; }); break;
    case m_sub: map2(m(o), m(a), m(b), nm, [](T x, T y) { return x - y; }); break;
    case m_mul: map2(m(o), m(a), m(b), nm, [](T x, T y) { return x * y; }); break;
    case m_scale: scale(m(o), s(a), m(b), d * d); break;
    case m_matvec: {  // tmp[i] = sum_j m[i][j] v[j], then v(o) = tmp
      const T* A = m(a);
      const T* x = v(b);
      std::fill(tmp_, tmp_ + nv, T(0));
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) {
          const T* Aij = A + (i * d + j) * nb;
          const T* xj = x + j * nb;
          T* y = tmp_ + i * nb;
          for (int64_t l = 0; l < nb; ++l) y[l] = y[l] + Aij[l] * xj[l];
        }
      std::copy(tmp_, tmp_ + nv, v(o));
      break;
    }
    case m_outer: {
      T* out = m(o);
      const T* x = v(a);
      const T* y = v(b);
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j)
          for (int64_t l = 0; l < nb; ++l) out[(i * d + j) * nb + l] = x[i * nb + l] * y[j * nb + l];
      break;
    }
    case m_matmul: {  // tmp[i][k] = sum_j a[i][j] b[j][k], j in order for every (i, k)
      const T* A = m(a);
      const T* B = m(b);
      std::fill(tmp_, tmp_ + nm, T(0));
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) {
          const T* Aij = A + (i * d + j) * nb;
          const T* Bj = B + j * d * nb;
          T* C = tmp_ + i * d * nb;
          for (int64_t c = 0; c < d; ++c)
            for (int64_t l = 0; l < nb; ++l) C[c * nb + l] = C[c * nb + l] + Aij[l] * Bj[c * nb + l];
        }
      std::copy(tmp_, tmp_ + nm, m(o));
      break;
    }
    case m_transpose: {
      const T* A = m(a);
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) {
          const T* Aji = A + (j * d + i) * nb;
          std::copy(Aji, Aji + nb, tmp_ + (i * d + j) * nb);
        }
      std::copy(tmp_, tmp_ + nm, m(o));
      break;
    }
    case m_abs: map1(m(o), m(a), nm, [](T x) { return std::fabs(x); }); break;
    case m_norm: {
      T* out = s(o);
      reduce(out, m(a), m(a), d * d, true);
      for (int64_t l = 0; l < nb; ++l) out[l] = std::sqrt(out[l]);
      break;
    }
    case m_mean: {
      T* out = s(o);
      reduce(out, m(a), nullptr, d * d, false);
      const T n = static_cast<T>(d * d);
      for (int64_t l = 0; l < nb; ++l) out[l] = out[l] / n;
      break;
    }
    case m_const: fill(m(o), nm, k); break;
    case v_get: {  // s(o) and v(a) are different files: no aliasing
      const T* x = v(a) + element_index(imm, d) * nb;
      std::copy(x, x + nb, s(o));
      break;
    }
    case kNumOps: break;  // never: check_code ran first
  }
}

void check_shape(const Shape& s) {
  constexpr int64_t kMaxFile = int64_t{1} << 16, kMaxDim = int64_t{1} << 16;
  EVOFORGE_CHECK(s.n_scalar >= 0 && s.n_scalar <= kMaxFile && s.n_vector >= 0 && s.n_vector <= kMaxFile &&
                     s.n_matrix >= 0 && s.n_matrix <= kMaxFile,
                 "register counts must lie in [0, " << kMaxFile << "]");
  EVOFORGE_CHECK(s.dim >= 1 && s.dim <= kMaxDim, "dim must lie in [1, " << kMaxDim << "], got " << s.dim);
  const int64_t per_lane = Machine<double>::per_lane(s);
  EVOFORGE_CHECK(per_lane <= (int64_t{1} << 28),
                 "the registers and their temporary hold " << per_lane << " values per example, more than 2^28");
}

}  // namespace

void check_code(const Code& c, const Shape& s, const char* what) {
  static const char* const kSlots[3] = {"out", "in1", "in2"};
  for (int64_t p = 0; p < c.P; ++p)
    for (int64_t i = 0; i < c.L; ++i) {
      const int32_t* ins = c.code + (p * c.L + i) * 4;
      EVOFORGE_CHECK(ins[0] >= 0 && ins[0] < kNumOps, what << ": program " << p << ", instruction " << i
                                                            << ": unknown op id " << ins[0] << " (0.."
                                                            << kNumOps - 1 << ")");
      const OpInfo& op = kOps[ins[0]];
      const char types[3] = {op.out, op.in1, op.in2};
      for (int k = 0; k < 3; ++k) {
        if (types[k] == kNone) continue;
        const int64_t n = file_size(s, types[k]);
        EVOFORGE_CHECK(ins[k + 1] >= 0 && ins[k + 1] < n,
                       what << ": program " << p << ", instruction " << i << " (" << op.name << "): " << kSlots[k]
                            << " = " << ins[k + 1] << " is not a " << type_name(types[k]) << " register (n_"
                            << type_name(types[k]) << " = " << n << ")");
      }
    }
}

template <typename T>
void run_function_cpu(const Code& code, const Shape& s, const T* inputs, int64_t E, bool vector_input, T* out,
                      int num_threads) {
  check_shape(s);
  EVOFORGE_CHECK(s.n_scalar >= 2, "run_function needs n_scalar >= 2 (s1 is the output)");
  EVOFORGE_CHECK(!vector_input || s.n_vector >= 1, "a vector input needs n_vector >= 1 (v0 is the input)");
  EVOFORGE_CHECK(E >= 0 && code.P >= 0 && code.L >= 0, "negative sizes");
  check_code(code, s, "code");
  if (E == 0 || code.P == 0) return;
  const int64_t d = s.dim, L = code.L;
  const int64_t max_lanes = std::clamp<int64_t>(kLaneBudget / Machine<T>::per_lane(s), 1, kMaxLanes);
  const int64_t lanes = std::min(E, max_lanes);
  const int64_t nblk = (E + lanes - 1) / lanes;
  const int64_t work = lanes * (s.elements() + L * (d + 1));
  parallel_for_work(code.P * nblk, resolve_threads(num_threads), work, [&](int64_t w0, int64_t w1, int) {
    Machine<T> mc(s, lanes);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t p = w / nblk, e0 = (w % nblk) * lanes, nb = std::min(lanes, E - e0);
      mc.set_lanes(nb);
      mc.zero();
      if (vector_input) {
        T* v0 = mc.v(0);
        for (int64_t l = 0; l < nb; ++l)
          for (int64_t j = 0; j < d; ++j) v0[j * nb + l] = inputs[(e0 + l) * d + j];
      } else {
        std::copy(inputs + e0, inputs + e0 + nb, mc.s(0));
      }
      mc.run(code.code + p * L * 4, code.imm + p * L, L);
      std::copy(mc.s(1), mc.s(1) + nb, out + p * E + e0);
    }
  });
}

template <typename T>
void run_learner_cpu(const Code& setup, const Code& predict, const Code& learn, const Shape& s, const T* train_x,
                     const T* train_y, const T* valid_x, int64_t n_tasks, int64_t N, int64_t M, int64_t epochs,
                     T* train_pred, T* valid_pred, int num_threads) {
  check_shape(s);
  EVOFORGE_CHECK(s.n_scalar >= 2 && s.n_vector >= 1,
                 "run_learner needs n_scalar >= 2 and n_vector >= 1 (s0 label, s1 prediction, v0 features)");
  EVOFORGE_CHECK(setup.P == predict.P && learn.P == predict.P, "setup, predict and learn must hold the same programs");
  EVOFORGE_CHECK(n_tasks >= 0 && N >= 0 && M >= 0 && epochs >= 0 && setup.L >= 0 && predict.L >= 0 && learn.L >= 0,
                 "negative sizes");
  check_code(setup, s, "setup");
  check_code(predict, s, "predict");
  check_code(learn, s, "learn");
  const int64_t P = predict.P, d = s.dim;
  if (P == 0 || n_tasks == 0) return;
  const int64_t work = s.elements() + setup.L * d +
                       (epochs * N * (predict.L + learn.L) + M * predict.L) * (d + 1);
  parallel_for_work(P * n_tasks, resolve_threads(num_threads), work, [&](int64_t w0, int64_t w1, int) {
    Machine<T> mc(s, 1);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t p = w / n_tasks, t = w % n_tasks;
      const int32_t *cs = setup.code + p * setup.L * 4, *cp = predict.code + p * predict.L * 4,
                    *cl = learn.code + p * learn.L * 4;
      const double *is = setup.imm + p * setup.L, *ip = predict.imm + p * predict.L, *il = learn.imm + p * learn.L;
      mc.zero();
      mc.run(cs, is, setup.L);
      T* tp = train_pred + (p * n_tasks + t) * N;
      for (int64_t ep = 0; ep < epochs; ++ep)
        for (int64_t n = 0; n < N; ++n) {
          const T* x = train_x + (t * N + n) * d;
          std::copy(x, x + d, mc.v(0));
          mc.run(cp, ip, predict.L);
          tp[n] = mc.s(1)[0];
          mc.s(0)[0] = train_y[t * N + n];
          mc.run(cl, il, learn.L);
        }
      T* vp = valid_pred + (p * n_tasks + t) * M;
      for (int64_t m = 0; m < M; ++m) {
        const T* x = valid_x + (t * M + m) * d;
        std::copy(x, x + d, mc.v(0));
        mc.run(cp, ip, predict.L);
        vp[m] = mc.s(1)[0];
      }
    }
  });
}

#define EVOFORGE_INSTANTIATE(T)                                                                              \
  template void run_function_cpu<T>(const Code&, const Shape&, const T*, int64_t, bool, T*, int);           \
  template void run_learner_cpu<T>(const Code&, const Code&, const Code&, const Shape&, const T*, const T*, \
                                   const T*, int64_t, int64_t, int64_t, int64_t, T*, T*, int);
EVOFORGE_INSTANTIATE(float)
EVOFORGE_INSTANTIATE(double)
#undef EVOFORGE_INSTANTIATE

}  // namespace interp
}  // namespace evoforge
