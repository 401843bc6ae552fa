// QS_HD marks an inline function that nvcc compiles for both the host and the device, so a
// CUDA kernel and its CPU twin run the same per-element arithmetic (backends/kernels/).
// Plain C++ compilers see an empty macro.
#pragma once

#if defined(__CUDACC__)
#define QS_HD __host__ __device__
#else
#define QS_HD
#endif
