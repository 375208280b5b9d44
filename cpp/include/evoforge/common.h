// Shared helpers for the native kernels: errors and parallel_for over a persistent thread pool.
// Torch- and pybind-free so that the kernels can be tested and reused on their own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
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

namespace detail {
/// One chunk of a parallel_for: fn(ctx, begin, end, worker).
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end, int worker);
/// Runs the chunks w = 0 .. workers - 1 of [0, n) (chunk w is [n w / workers, n (w + 1) / workers))
/// on the persistent pool of cpp/thread_pool.cpp and the calling thread; rethrows the exception of
/// the lowest failing chunk after every chunk has finished. Serial on the caller when called from
/// inside a pool job (nested) or while another thread's job holds the pool.
void run_chunks(int64_t n, int workers, ChunkFn fn, void* ctx);
}  // namespace detail

/// Work (in a kernel's own unit: bytes read, multiply-adds) below which a chunk is not worth handing
/// to another thread: waking a pooled worker costs ~1-5 us when it spins, ~50 us when it sleeps,
/// and a chunk of 2^16 bytes streams in about that time.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 16;

/// Runs fn(begin, end, worker) over [0, n) split into at most `threads` contiguous chunks of at
/// least min_chunk items (fewer chunks when n is small; one chunk runs on the caller, no thread).
/// The split depends only on (n, threads, min_chunk), and kernels must make their result
/// independent of it, so that the same input gives the same output on any thread count.
/// Chunks run on a persistent pool (cpp/thread_pool.cpp): workers are created once, on demand, and
/// spin ~50 us after a job before they sleep. A worker that cannot be created (a process limit)
/// leaves its chunks to the others and the caller. Exceptions propagate (the lowest chunk's).
/// Nested calls (from inside fn) and calls while another thread's job holds the pool run serially.
template <typename Fn>
void parallel_for(int64_t n, int threads, int64_t min_chunk, Fn&& fn) {
  if (n <= 0) return;
  int64_t max_workers = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  int workers = static_cast<int>(std::min<int64_t>(std::clamp(threads, 1, kMaxThreads), max_workers));
  if (workers <= 1) {
    fn(int64_t{0}, n, 0);
    return;
  }
  using F = std::remove_reference_t<Fn>;
  detail::run_chunks(
      n, workers, [](void* c, int64_t b, int64_t e, int w) { (*static_cast<F*>(c))(b, e, w); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

/// parallel_for with the threshold in units of work: every chunk gets at least kMinWorkPerThread
/// of work, item i costing work_per_item (so a call whose total work is below 2 kMinWorkPerThread
/// runs on the caller).
template <typename Fn>
void parallel_for_work(int64_t n, int threads, int64_t work_per_item, Fn&& fn) {
  const int64_t w = std::max<int64_t>(1, work_per_item);
  parallel_for(n, threads, (kMinWorkPerThread + w - 1) / w, std::forward<Fn>(fn));
}

}  // namespace evoforge
