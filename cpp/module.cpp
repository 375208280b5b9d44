// The evoforge._core extension: build facts, threading, and one register_* per kernel family.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
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
  const char* env = std::getenv("EVOFORGE_NUM_THREADS");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(env, &end, 10);
    EVOFORGE_CHECK(errno == 0 && *end == '\0' && v >= 1 && v <= kMaxThreads,
                   "EVOFORGE_NUM_THREADS must be an integer in [1, " << kMaxThreads << "], got '" << env << "'");
    return static_cast<int>(v);
  }
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, unsigned{kMaxThreads}));
}

void set_default_num_threads(int n) {
  EVOFORGE_CHECK(n >= 0 && n <= kMaxThreads,
                 "the number of threads must lie in [1, " << kMaxThreads << "] (0: the default), got " << n);
  g_threads.store(n);
}

void register_pareto(py::module_& m);
void register_hashing(py::module_& m);
void register_variation(py::module_& m);
void register_solvers(py::module_& m);
void register_kl(py::module_& m);
void register_quant(py::module_& m);
void register_sparse(py::module_& m);
void register_threads(py::module_& m);

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
    d["max_threads"] = evoforge::kMaxThreads;
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
  evoforge::register_threads(m);
}
