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

// EVOFORGE_NUM_THREADS, else the hardware's threads; read once, because getenv and
// hardware_concurrency cost microseconds, which every batch-1 layer call would pay. A bad value
// is not cached, so every call keeps raising its error.
int env_or_hardware_threads() {
  static std::atomic<int> cached{0};
  const int c = cached.load(std::memory_order_relaxed);
  if (c > 0) return c;
  int v = 0;
  const char* env = std::getenv("EVOFORGE_NUM_THREADS");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    errno = 0;
    const long e = std::strtol(env, &end, 10);
    EVOFORGE_CHECK(errno == 0 && *end == '\0' && e >= 1 && e <= kMaxThreads,
                   "EVOFORGE_NUM_THREADS must be an integer in [1, " << kMaxThreads << "], got '" << env << "'");
    v = static_cast<int>(e);
  } else {
    v = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, unsigned{kMaxThreads}));
  }
  cached.store(v, std::memory_order_relaxed);
  return v;
}
}  // namespace

int default_num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : env_or_hardware_threads();
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
void register_merging(py::module_& m);
void register_threads(py::module_& m);
void register_interpreter(py::module_& m);

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
  evoforge::register_merging(m);
  evoforge::register_threads(m);
  evoforge::register_interpreter(m);
}
