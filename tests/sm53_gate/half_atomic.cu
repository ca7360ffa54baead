// tests/sm53_gate/half_atomic.cu — negative sample for scripts/sm53_gate.sh: atomicAdd on __half exists
// only from sm_70, so this must NOT compile for sm_53. The gate fails if it does.
// gate-expect: no instance of overloaded function "atomicAdd"
#include <cuda_fp16.h>

__global__ void accumulate_half(__half* sum, const __half* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(sum, x[i]);
}
