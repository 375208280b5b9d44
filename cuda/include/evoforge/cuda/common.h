// Host-side helpers shared by the CUDA kernels (no device code here).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace evoforge::cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Messages are built with std::string, never iostreams: in nvcc-compiled host code (CUDA 13.0,
// GCC 13) inserting an integer into a std::ostringstream segfaulted inside num_put on an H200.
inline std::string message_part(const char* s) { return s; }
inline std::string message_part(const std::string& s) { return s; }
template <class T>
std::string message_part(T v) {
  return std::to_string(v);
}
template <class... A>
std::string message(const A&... parts) {
  std::string s;
  ((s += message_part(parts)), ...);
  return s;
}

#define EVOFORGE_CUDA_CHECK(expr)                                                                   \
  do {                                                                                              \
    cudaError_t evoforge_err_ = (expr);                                                             \
    if (evoforge_err_ != cudaSuccess)                                                               \
      throw ::evoforge::cuda::CudaError(::evoforge::cuda::message(                                  \
          #expr, ": ", cudaGetErrorString(evoforge_err_), " [", __func__, "]"));                   \
  } while (0)

}  // namespace evoforge::cuda
