// A probe of parallel_for (evoforge/common.h, cpp/thread_pool.cpp) for tests/test_threads.py: it
// records the chunks a call runs, optionally nests a second call inside every chunk and throws
// from one chunk, so that the split, nesting, exception propagation and concurrent callers can be
// checked from Python against the formula of the split.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include "evoforge/common.h"

namespace py = pybind11;

namespace evoforge {
namespace {

using Chunk = std::tuple<int64_t, int64_t, int>;  // (begin, end, worker)

struct Probe {
  std::vector<Chunk> chunks;                  // in worker order
  std::vector<std::vector<Chunk>> nested;     // the chunks of the call nested in each chunk
  int distinct_threads = 0;                   // OS threads that ran a chunk
};

Probe probe(int64_t n, int threads, int64_t min_chunk, int nested_threads, int fail, int64_t sleep_us) {
  Probe out;
  std::mutex m;
  std::vector<std::thread::id> ids;
  std::vector<std::pair<Chunk, std::vector<Chunk>>> rec;
  {
    py::gil_scoped_release release;
    parallel_for(n, threads, min_chunk, [&](int64_t b, int64_t e, int w) {
      if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      if (w == fail) throw std::invalid_argument("probe chunk " + std::to_string(w) + " failed");
      std::vector<Chunk> inner;
      if (nested_threads > 0) {
        std::mutex im;
        parallel_for(e - b, nested_threads, 1, [&](int64_t nb, int64_t ne, int nw) {
          std::lock_guard<std::mutex> lk(im);
          inner.emplace_back(b + nb, b + ne, nw);
        });
      }
      std::lock_guard<std::mutex> lk(m);
      rec.emplace_back(Chunk{b, e, w}, std::move(inner));
      ids.push_back(std::this_thread::get_id());
    });
  }
  std::sort(rec.begin(), rec.end(), [](const auto& a, const auto& b) { return std::get<2>(a.first) < std::get<2>(b.first); });
  for (auto& r : rec) {
    std::sort(r.second.begin(), r.second.end(), [](const Chunk& a, const Chunk& b) { return std::get<2>(a) < std::get<2>(b); });
    out.chunks.push_back(r.first);
    out.nested.push_back(std::move(r.second));
  }
  std::sort(ids.begin(), ids.end());
  out.distinct_threads = static_cast<int>(std::unique(ids.begin(), ids.end()) - ids.begin());
  return out;
}

}  // namespace

void register_threads(py::module_& m) {
  m.def(
      "thread_pool_probe",
      [](int64_t n, int threads, int64_t min_chunk, int nested_threads, int fail, int64_t sleep_us) {
        Probe p = probe(n, threads, min_chunk, nested_threads, fail, sleep_us);
        return py::make_tuple(p.chunks, p.nested, p.distinct_threads);
      },
      py::arg("n"), py::arg("threads"), py::arg("min_chunk") = 1, py::arg("nested_threads") = 0,
      py::arg("fail") = -1, py::arg("sleep_us") = 0,
      "(chunks [(begin, end, worker)], nested chunks per chunk, distinct OS threads) of one parallel_for");
}

}  // namespace evoforge
