// tests/sm53_gate/register_spill.cu — negative sample for scripts/sm53_gate.sh: 1024-thread blocks leave 32
// registers per thread on sm_53 (32K registers per block), and this kernel keeps 48 loaded values live at
// once (every output needs all of them, and the stores may alias the input, so ptxas cannot reload them),
// so ptxas must spill to local memory. The gate fails if this compiles without a spill / lmem warning.
// gate-expect: Registers are spilled to local memory
constexpr int kLive = 48;

__global__ void __launch_bounds__(1024) pairwise_products(float* out, const float* in, int n) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  float v[kLive];
#pragma unroll
  for (int k = 0; k < kLive; ++k) v[k] = in[t + k * n];
#pragma unroll
  for (int k = 0; k < kLive; ++k) {
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < kLive; ++j) acc += v[j] * v[(j + k) % kLive];
    out[t + k * n] = acc;
  }
}
