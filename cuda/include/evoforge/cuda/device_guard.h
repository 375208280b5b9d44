// Makes a device current for a scope and restores the previous one (host side).
#pragma once

#include <cuda_runtime.h>

#include "evoforge/cuda/common.h"

namespace evoforge::cuda {

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    EVOFORGE_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) {
      EVOFORGE_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool changed_ = false;
};

}  // namespace evoforge::cuda
