// retikd/core/host_device.hpp — RETIKD_HOST_DEVICE: marks functions that both the host compiler and nvcc's
// device pass must compile (the half type, small helpers shared with kernels/). C++14: nvcc 10.2 includes it.
#pragma once

#if defined(__CUDACC__)
#define RETIKD_HOST_DEVICE __host__ __device__
#else
#define RETIKD_HOST_DEVICE
#endif
