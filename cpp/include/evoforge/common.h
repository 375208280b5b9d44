// Shared helpers for the native kernels: errors and a small thread pool-free parallel_for.
// Torch- and pybind-free so that the kernels can be tested and reused on their own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace evoforge {

// pybind11 maps std::invalid_argument to ValueError and std::out_of_range to IndexError.
#define EVOFORGE_THROW(exc, msg)                                              \
  do {                                                                         \
    std::ostringstream evoforge_os_;                                           \
    evoforge_os_ << msg << " [" << __func__ << "]";                            \
    throw exc(evoforge_os_.str());                                             \
  } while (0)
#define EVOFORGE_CHECK(cond, msg)                                              \
  do {                                                                         \
    if (!(cond)) EVOFORGE_THROW(std::invalid_argument, msg);                   \
  } while (0)

/// Most threads one kernel call may use: far above any CPU's core count, far below the point where
/// thread creation fails (a pool of 10^5 threads aborted the process).
constexpr int kMaxThreads = 1024;

/// Threads used by native kernels when a call passes num_threads <= 0: set_default_num_threads,
/// else EVOFORGE_NUM_THREADS, else the hardware's. Throws std::invalid_argument for a value
/// outside [1, kMaxThreads] (0 in set_default_num_threads means "back to the default").
int default_num_threads();
void set_default_num_threads(int n);

inline int resolve_threads(int num_threads) {
  return num_threads > 0 ? std::min(num_threads, kMaxThreads) : default_num_threads();
}

/// Runs fn(begin, end, worker) over [0, n) split into at most `threads` contiguous chunks.
/// The split depends only on (n, threads), and kernels must make their result independent
/// of it, so that the same input gives the same output on any thread count.
template <typename Fn>
void parallel_for(int64_t n, int threads, int64_t min_chunk, Fn&& fn) {
  if (n <= 0) return;
  int64_t max_workers = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  int workers = static_cast<int>(std::min<int64_t>(std::max(1, threads), max_workers));
  if (workers <= 1) {
    fn(int64_t{0}, n, 0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  std::exception_ptr error;
  std::vector<std::exception_ptr> errors(workers);
  auto run = [&](int w) {
    int64_t b = n * w / workers, e = n * (w + 1) / workers;
    try {
      fn(b, e, w);
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  // A thread that cannot be created (a process or container limit) is not an error: its chunk
  // runs on this thread instead, so the split, and the result, stay the same.
  int started = 1;
  try {
    for (; started < workers; ++started) pool.emplace_back(run, started);
  } catch (const std::system_error&) {
  }
  for (int w = started; w < workers; ++w) run(w);
  run(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace evoforge
