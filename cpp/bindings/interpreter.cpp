// Bindings for the register-program interpreter; evoforge/interpreter.py validates first (dtypes,
// shapes, op ids, register indices, counts), and the kernel checks the instructions again.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/interpreter.h"

namespace py = pybind11;

namespace evoforge {
namespace {

interp::Code code_of(const CArray<int32_t>& code, const CArray<double>& imm, const char* name) {
  EVOFORGE_CHECK(code.ndim() == 3 && code.shape(2) == 4, name << " code must have shape [P, L, 4]");
  EVOFORGE_CHECK(imm.ndim() == 2 && imm.shape(0) == code.shape(0) && imm.shape(1) == code.shape(1),
                 name << " imm must have shape [" << code.shape(0) << ", " << code.shape(1) << "]");
  interp::Code c;
  c.code = code.data();
  c.imm = imm.data();
  c.P = code.shape(0);
  c.L = code.shape(1);
  return c;
}

template <typename T>
CArray<T> run_function_impl(CArray<int32_t> code, CArray<double> imm, CArray<T> inputs, int64_t n_scalar,
                            int64_t n_vector, int64_t n_matrix, int64_t dim, bool vector_input, int threads) {
  const interp::Code c = code_of(code, imm, "program");
  const interp::Shape s{n_scalar, n_vector, n_matrix, dim};
  if (vector_input)
    EVOFORGE_CHECK(inputs.ndim() == 2 && inputs.shape(1) == dim, "vector inputs must have shape [E, " << dim << "]");
  else
    EVOFORGE_CHECK(inputs.ndim() == 1, "scalar inputs must have shape [E]");
  const int64_t E = inputs.shape(0);
  CArray<T> out({c.P, E});
  const T* x = inputs.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    interp::run_function_cpu<T>(c, s, x, E, vector_input, o, threads);
  }
  return out;
}

template <typename T>
py::tuple run_learner_impl(CArray<int32_t> setup, CArray<double> setup_imm, CArray<int32_t> predict,
                           CArray<double> predict_imm, CArray<int32_t> learn, CArray<double> learn_imm,
                           CArray<T> train_x, CArray<T> train_y, CArray<T> valid_x, int64_t n_scalar,
                           int64_t n_vector, int64_t n_matrix, int64_t epochs, int threads) {
  const interp::Code cs = code_of(setup, setup_imm, "setup"), cp = code_of(predict, predict_imm, "predict"),
                     cl = code_of(learn, learn_imm, "learn");
  EVOFORGE_CHECK(train_x.ndim() == 3, "train_x must have shape [T, N, dim]");
  const int64_t n_tasks = train_x.shape(0), N = train_x.shape(1), dim = train_x.shape(2);
  EVOFORGE_CHECK(train_y.ndim() == 2 && train_y.shape(0) == n_tasks && train_y.shape(1) == N,
                 "train_y must have shape [" << n_tasks << ", " << N << "]");
  EVOFORGE_CHECK(valid_x.ndim() == 3 && valid_x.shape(0) == n_tasks && valid_x.shape(2) == dim,
                 "valid_x must have shape [" << n_tasks << ", M, " << dim << "]");
  const int64_t M = valid_x.shape(1);
  const interp::Shape s{n_scalar, n_vector, n_matrix, dim};
  CArray<T> tp({cp.P, n_tasks, N}), vp({cp.P, n_tasks, M});
  T* tpp = tp.mutable_data();
  T* vpp = vp.mutable_data();
  std::fill(tpp, tpp + tp.size(), T(0));
  const T *x = train_x.data(), *y = train_y.data(), *vx = valid_x.data();
  {
    py::gil_scoped_release release;
    interp::run_learner_cpu<T>(cs, cp, cl, s, x, y, vx, n_tasks, N, M, epochs, tpp, vpp, threads);
  }
  return py::make_tuple(tp, vp);
}

py::tuple canonical_impl(CArray<int32_t> code, CArray<double> imm, CArray<int64_t> lengths, int64_t n_scalar,
                         int64_t n_vector, int64_t n_matrix, int64_t dim) {
  EVOFORGE_CHECK(code.ndim() == 2 && code.shape(1) == 4, "code must have shape [N, 4]");
  EVOFORGE_CHECK(imm.ndim() == 1 && imm.shape(0) == code.shape(0), "imm must have shape [" << code.shape(0) << "]");
  EVOFORGE_CHECK(lengths.ndim() == 2, "lengths must have shape [B, C]");
  const int64_t B = lengths.shape(0), C = lengths.shape(1);
  int64_t total = 0;
  for (int64_t i = 0; i < B * C; ++i) {
    EVOFORGE_CHECK(lengths.data()[i] >= 0, "lengths must be >= 0");
    total += lengths.data()[i];
  }
  EVOFORGE_CHECK(total == code.shape(0), "lengths sum to " << total << ", code holds " << code.shape(0)
                                                            << " instructions");
  const interp::Shape s{n_scalar, n_vector, n_matrix, dim};
  std::vector<int32_t> co;
  std::vector<double> io;
  CArray<int64_t> lo({B, C});
  {
    py::gil_scoped_release release;
    co.reserve(code.size());
    io.reserve(imm.size());
    interp::canonical_programs(code.data(), imm.data(), lengths.data(), B, C, s, co, io, lo.mutable_data());
  }
  const int64_t n = static_cast<int64_t>(io.size());
  CArray<int32_t> code_out({n, int64_t{4}});
  CArray<double> imm_out({n});
  std::copy(co.begin(), co.end(), code_out.mutable_data());
  std::copy(io.begin(), io.end(), imm_out.mutable_data());
  return py::make_tuple(code_out, imm_out, lo);
}

std::string type_str(char t) { return t == interp::kNone ? std::string() : std::string(1, t); }

}  // namespace

void register_interpreter(py::module_& m) {
  m.def("interpreter_ops", [] {
    py::list ops;
    for (const interp::OpInfo& op : interp::kOps) {
      py::list ins;
      for (char t : {op.in1, op.in2})
        if (t != interp::kNone) ins.append(type_str(t));
      ops.append(py::make_tuple(op.name, type_str(op.out), py::tuple(ins), op.imm));
    }
    return py::tuple(ops);
  });
  m.def("interp_canonical", &canonical_impl, py::arg("code"), py::arg("imm"), py::arg("lengths"),
        py::arg("n_scalar"), py::arg("n_vector"), py::arg("n_matrix"), py::arg("dim"));
  m.def("interp_run_function_f32", &run_function_impl<float>, py::arg("code"), py::arg("imm"), py::arg("inputs"),
        py::arg("n_scalar"), py::arg("n_vector"), py::arg("n_matrix"), py::arg("dim"), py::arg("vector_input"),
        py::arg("threads") = 0);
  m.def("interp_run_function_f64", &run_function_impl<double>, py::arg("code"), py::arg("imm"), py::arg("inputs"),
        py::arg("n_scalar"), py::arg("n_vector"), py::arg("n_matrix"), py::arg("dim"), py::arg("vector_input"),
        py::arg("threads") = 0);
  m.def("interp_run_learner_f32", &run_learner_impl<float>, py::arg("setup"), py::arg("setup_imm"),
        py::arg("predict"), py::arg("predict_imm"), py::arg("learn"), py::arg("learn_imm"), py::arg("train_x"),
        py::arg("train_y"), py::arg("valid_x"), py::arg("n_scalar"), py::arg("n_vector"), py::arg("n_matrix"),
        py::arg("epochs"), py::arg("threads") = 0);
  m.def("interp_run_learner_f64", &run_learner_impl<double>, py::arg("setup"), py::arg("setup_imm"),
        py::arg("predict"), py::arg("predict_imm"), py::arg("learn"), py::arg("learn_imm"), py::arg("train_x"),
        py::arg("train_y"), py::arg("valid_x"), py::arg("n_scalar"), py::arg("n_vector"), py::arg("n_matrix"),
        py::arg("epochs"), py::arg("threads") = 0);
}

}  // namespace evoforge
