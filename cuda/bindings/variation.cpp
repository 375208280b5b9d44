// Bindings for the CUDA variation kernels: device pointers, sizes and a stream as ints. The Python
// layer (evoforge/variation/mutation.py, variation/deepga.py) validates and allocates with torch.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/mutation.h"

namespace py = pybind11;

namespace evoforge::cuda {
namespace {

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
cudaStream_t stream_of(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

}  // namespace

void register_variation(py::module_& m) {
  m.def(
      "level_switch",
      [](uintptr_t parents, int64_t P, int64_t L, uintptr_t lower, uintptr_t upper, uintptr_t group_of,
         uintptr_t members, uintptr_t group_start, int32_t max_group, uintptr_t costs, int64_t cost_stride,
         double tol, int32_t n_offspring, int32_t max_switches, int32_t max_attempts, uint64_t seed,
         uint32_t generation, uint32_t individual_offset, uintptr_t out, uintptr_t drift, uintptr_t ws_int,
         uintptr_t ws_hash, uintptr_t slots, uintptr_t status, uintptr_t stream) {
        LevelSwitchArgs a{};
        a.parents = ptr<const int32_t>(parents);
        a.P = P;
        a.L = L;
        a.lower = ptr<const int32_t>(lower);
        a.upper = ptr<const int32_t>(upper);
        a.group_of = ptr<const int32_t>(group_of);
        a.members = ptr<const int32_t>(members);
        a.group_start = ptr<const int32_t>(group_start);
        a.max_group = max_group;
        a.costs = ptr<const double>(costs);
        a.cost_stride = cost_stride;
        a.tol = tol;
        a.n_offspring = n_offspring;
        a.max_switches = max_switches;
        a.max_attempts = max_attempts;
        a.seed = seed;
        a.generation = generation;
        a.individual_offset = individual_offset;
        a.out = ptr<int32_t>(out);
        a.drift = ptr<double>(drift);
        const int64_t no = P * n_offspring;
        a.ws_genes = ptr<int32_t>(ws_int);                       // [no, kMaxDiff]
        a.ws_delta = ptr<int32_t>(ws_int) + no * kMaxDiff;       // [no, kMaxDiff]
        a.ws_count = ptr<int32_t>(ws_int) + 2 * no * kMaxDiff;   // [no]
        int32_t* cand = ptr<int32_t>(ws_int) + (2 * kMaxDiff + 1) * no;  // [no]
        a.ws_hash = ptr<uint64_t>(ws_hash);
        a.status = ptr<int32_t>(status);
        py::gil_scoped_release release;
        // drift doubles as the phases' exact[] (always allocated by the caller).
        level_switch_cuda(a, cand, ptr<double>(drift), ptr<int64_t>(slots), stream_of(stream));
      });
  m.attr("level_switch_ws_ints_per_offspring") = 2 * kMaxDiff + 2;
  m.def("level_switch_slot_capacity", [](int64_t n) { return level_switch_slot_capacity(n); });
  m.def("gaussian_mutation_f32",
        [](uintptr_t x, int64_t P, int64_t L, uintptr_t sigma, double prob, uintptr_t lower, uintptr_t upper,
           uint64_t seed, uint32_t generation, uint32_t offset, uintptr_t out, uintptr_t stream) {
          py::gil_scoped_release release;
          gaussian_mutation_cuda(ptr<const float>(x), P, L, ptr<const float>(sigma), prob, ptr<const float>(lower),
                                 ptr<const float>(upper), seed, generation, offset, ptr<float>(out),
                                 stream_of(stream));
        });
  m.def("gaussian_normals", [](int64_t P, int64_t L, uint64_t seed, uint32_t generation, uint32_t offset,
                               uintptr_t out, uintptr_t stream) {
    py::gil_scoped_release release;
    gaussian_normals_cuda(P, L, seed, generation, offset, ptr<float>(out), stream_of(stream));
  });
  m.def("seeds_to_params", [](uintptr_t base, int64_t base_stride, int64_t P, int64_t D, uintptr_t seeds,
                              uintptr_t offsets, float sigma, uintptr_t out, uintptr_t stream) {
    py::gil_scoped_release release;
    seeds_to_params_cuda(ptr<const float>(base), base_stride, P, D, ptr<const uint64_t>(seeds),
                         ptr<const int64_t>(offsets), sigma, ptr<float>(out), stream_of(stream));
  });
}

}  // namespace evoforge::cuda
