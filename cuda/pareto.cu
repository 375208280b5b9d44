// CUDA Pareto kernels: in progress.
