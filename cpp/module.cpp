// The evoforge._core extension: build facts, threading, and one register_* per kernel family.
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "evoforge/common.h"

namespace py = pybind11;

namespace evoforge {

namespace {
std::atomic<int> g_threads{0};
}

int default_num_threads() {
  int n = g_threads.load();
  if (n > 0) return n;
  if (const char* env = std::getenv("EVOFORGE_NUM_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return v;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_default_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

void register_pareto(py::module_& m);
void register_hashing(py::module_& m);
void register_variation(py::module_& m);
void register_solvers(py::module_& m);
void register_kl(py::module_& m);
void register_quant(py::module_& m);
void register_sparse(py::module_& m);

}  // namespace evoforge

PYBIND11_MODULE(_core, m) {
  m.doc() = "evoforge native kernels (CPU). Use the Python wrappers in evoforge.*.";
  m.def("build_info", [] {
    py::dict d;
    d["version"] = EVOFORGE_VERSION;
    d["compiler"] = EVOFORGE_CXX_COMPILER;
    d["build_type"] = EVOFORGE_BUILD_TYPE;
    d["cxx_flags"] = EVOFORGE_CXX_FLAGS;
    d["threading"] = "std::thread";
    return d;
  });
  m.def("get_num_threads", &evoforge::default_num_threads);
  m.def("set_num_threads", &evoforge::set_default_num_threads, py::arg("n"));
  evoforge::register_pareto(m);
  evoforge::register_hashing(m);
  evoforge::register_variation(m);
  evoforge::register_solvers(m);
  evoforge::register_kl(m);
  evoforge::register_quant(m);
  evoforge::register_sparse(m);
}
