// Host-side helpers shared by the CUDA kernels (no device code here).
#pragma once

#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>

namespace evoforge::cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define EVOFORGE_CUDA_CHECK(expr)                                                        \
  do {                                                                                   \
    cudaError_t evoforge_err_ = (expr);                                                  \
    if (evoforge_err_ != cudaSuccess) {                                                  \
      std::ostringstream evoforge_os_;                                                   \
      evoforge_os_ << #expr << ": " << cudaGetErrorString(evoforge_err_) << " ["         \
                   << __FILE__ << ":" << __LINE__ << "]";                                \
      throw ::evoforge::cuda::CudaError(evoforge_os_.str());                             \
    }                                                                                    \
  } while (0)

}  // namespace evoforge::cuda
