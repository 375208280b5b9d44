// The persistent thread pool behind evoforge::parallel_for (evoforge/common.h).
//
// Why a pool: creating std::threads per call cost ~70 us, more than a batch-1 layer kernel. Workers
// are created on demand (never more than a job asked for, at most kMaxThreads - 1) and kept.
//
// One job at a time: a caller takes the pool with an atomic flag; a second caller (another Python
// thread) or a nested call (from inside a chunk, on a worker or on the caller) does not wait for
// it but runs its chunks serially on its own thread, which gives the same result (the split is the
// same) and cannot deadlock.
//
// A job is published as one 64-bit ticket: generation (52 bits) | chunk count (12). Threads claim
// chunk w with a compare-exchange of claimed[w] from an older generation to the job's, worker w its
// own chunk first (the same rows on the same core on every call: they stay in its L2), then any
// left; a worker that wakes late, after its job ended, finds every chunk of it claimed. The caller
// claims chunks too, so a job finishes even when no worker could be created. The job's other fields are written
// before the ticket (release) and read after a successful claim (acquire), and stay valid until
// every chunk has reported done, which the caller waits for before it returns.
//
// Waiting: workers spin ~50 us on the ticket after a job (decode calls its layers back to back,
// and a futex wake-up costs more than a small kernel), then sleep on a condition variable; the
// caller spins while the last chunks finish, then sleeps. Sleepers are counted so that a job only
// pays for a notify when someone sleeps (the seq_cst store / load pairs make the check race-free).
// A forked child gets a fresh, empty pool (pthread_atfork): its parent's workers do not exist there.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "evoforge/common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EVOFORGE_PAUSE() _mm_pause()
#else
#define EVOFORGE_PAUSE() std::this_thread::yield()
#endif

namespace evoforge {
namespace detail {
namespace {

constexpr auto kWorkerSpin = std::chrono::microseconds(50);
constexpr auto kCallerSpin = std::chrono::microseconds(200);
constexpr int kGenShift = 12;
constexpr uint64_t kField = (uint64_t{1} << 12) - 1;
static_assert(kMaxThreads < (1 << 12), "chunk indices must fit the ticket's 12-bit fields");

// Set on pool workers, and on a caller while it runs its own job: a parallel_for from there is nested.
thread_local bool t_in_pool = false;

struct Pool {
  std::atomic<bool> busy{false};
  std::atomic<uint64_t> ticket{0};  // generation << 12 | chunk count
  std::atomic<uint64_t> claimed[kMaxThreads] = {};
  std::atomic<int> done{0};
  std::atomic<int> sleepers{0};
  std::atomic<bool> caller_sleeps{false};
  // The job: valid from the ticket's publication until done == its chunk count.
  ChunkFn fn = nullptr;
  void* ctx = nullptr;
  int64_t n = 0;
  std::exception_ptr* errors = nullptr;

  std::mutex m;  // sleeping and notifying
  std::condition_variable wake, finished;
  int started = 0;         // workers created (ids 1..started); touched only by the pool's holder
  int cap = kMaxThreads;   // after a failed creation: never try beyond this many again

  static uint64_t gen(uint64_t t) { return t >> kGenShift; }

  // Claims and runs chunks of job `g` with `count` chunks: first chunk `id` (so that a layer's rows
  // stay on the same core, in its cache, from one call to the next), then any chunk left (of a
  // worker that is slow, asleep or was never created). `id` 0 is the caller.
  void help(uint64_t g, int count, int id) {
    for (int i = 0; i < count; ++i) {
      const int w = (id + i) % count;
      // claimed[w] holds the last generation that claimed chunk w; every chunk of a finished job
      // was claimed, so a worker that wakes late (g is over) can never claim one.
      uint64_t v = claimed[w].load(std::memory_order_relaxed);
      if (v >= g || !claimed[w].compare_exchange_strong(v, g, std::memory_order_acq_rel)) continue;
      try {
        fn(ctx, n * w / count, n * (w + 1) / count, w);
      } catch (...) {
        errors[w] = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == count && caller_sleeps.load()) {
        std::lock_guard<std::mutex> lk(m);
        finished.notify_one();
      }
    }
  }

  void worker(int id) {
    t_in_pool = true;
    uint64_t seen = gen(ticket.load(std::memory_order_acquire));
    for (;;) {
      uint64_t t = ticket.load(std::memory_order_acquire);
      if (gen(t) == seen) {
        const auto until = std::chrono::steady_clock::now() + kWorkerSpin;
        for (int i = 1; gen(t = ticket.load(std::memory_order_acquire)) == seen; ++i) {
          EVOFORGE_PAUSE();
          if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
        }
      }
      if (gen(t) == seen) {
        std::unique_lock<std::mutex> lk(m);
        sleepers.fetch_add(1);
        wake.wait(lk, [&] { return gen(t = ticket.load()) != seen; });
        sleepers.fetch_sub(1);
      }
      seen = gen(t);
      const int count = static_cast<int>(t & kField);
      if (id < count) help(seen, count, id);
    }
  }

  // Workers 1 .. want - 1 exist afterwards, or as many as the process allowed.
  void grow(int want) {
    for (; started < std::min(want, cap) - 1; ++started) {
      try {
        std::thread([this, id = started + 1] { worker(id); }).detach();
      } catch (const std::system_error&) {
        cap = started + 1;  // a process / container limit: the caller and the others do the chunks
        return;
      }
    }
  }
};

// Never destroyed: detached workers may still touch it while the process exits.
Pool* g_pool = new Pool;

void reset_after_fork() { g_pool = new Pool; }  // the parent's workers do not exist in the child
const int g_atfork = pthread_atfork(nullptr, nullptr, reset_after_fork);

void serial(int64_t n, int workers, ChunkFn fn, void* ctx) {
  for (int w = 0; w < workers; ++w) fn(ctx, n * w / workers, n * (w + 1) / workers, w);
}

}  // namespace

void run_chunks(int64_t n, int workers, ChunkFn fn, void* ctx) {
  (void)g_atfork;
  Pool& p = *g_pool;
  if (t_in_pool || p.busy.exchange(true, std::memory_order_acquire)) return serial(n, workers, fn, ctx);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  p.grow(workers);
  p.fn = fn, p.ctx = ctx, p.n = n, p.errors = errors.data();
  p.done.store(0);
  const uint64_t g = Pool::gen(p.ticket.load()) + 1;
  p.ticket.store(g << kGenShift | static_cast<uint64_t>(workers));
  if (p.sleepers.load() > 0) {
    { std::lock_guard<std::mutex> lk(p.m); }
    p.wake.notify_all();
  }
  t_in_pool = true;
  p.help(g, workers, 0);
  t_in_pool = false;
  if (p.done.load(std::memory_order_acquire) != workers) {
    const auto until = std::chrono::steady_clock::now() + kCallerSpin;
    for (int i = 1; p.done.load(std::memory_order_acquire) != workers; ++i) {
      EVOFORGE_PAUSE();
      if (i % 64 == 0 && std::chrono::steady_clock::now() > until) {
        std::unique_lock<std::mutex> lk(p.m);
        p.caller_sleeps.store(true);
        p.finished.wait(lk, [&] { return p.done.load() == workers; });
        p.caller_sleeps.store(false);
        break;
      }
    }
  }
  p.busy.store(false, std::memory_order_release);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace detail
}  // namespace evoforge
