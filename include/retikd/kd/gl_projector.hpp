// retikd/kd/gl_projector.hpp — the group-wise linear projector (DESIGN.md §5, GL): student features mapped to
// the teacher's token space, matched by MSE to the teacher's patch tokens (CLS removed).
//
// Shapes: student map S (B, C, h, w) → aligned S_a (B, C, hc, wc) (kd/grid.hpp), N = hc·wc; teacher patch
// tokens on the same grid T (B, N, D).
//
// Grouping `spatial` (CAKD): token positions are grouped into block×block neighbourhoods (block = 4) of the
// hc×wc grid, starting at the top-left corner: position (y, x) belongs to group
//     m = ⌊y/block⌋·⌈wc/block⌉ + ⌊x/block⌋,      M = ⌈hc/block⌉·⌈wc/block⌉ groups,
// and every position of group m uses the same linear map  y_n = W_m·s_n + b_m  (W_m (D, C), b_m (D)).
// At 14×14 with block 4 that is 16 maps (blocks of 4, 4, 4 and 2 rows / columns); at 8×8, 4 maps; at 7×7,
// 4 maps (4 and 3). M is fixed when the projector is built (`grid_h`, `grid_w`): other grids throw.
// Parameters: weight (M, D, C), bias (M, D), each map initialised like an nn.Linear (U(±1/√C)).
//
// Grouping `channel` (the paper code's): the C student channels are split into G contiguous groups of C/G
// channels and group g is mapped by its own 1×1 linear map to the D/G teacher dimensions
// [g·D/G, (g+1)·D/G): a grouped 1×1 convolution C → D with G groups (weight (D, C/G, 1, 1), bias (D)),
// identical at every position. Needs C and D divisible by G (G = 8 in the paper code).
//
//   Y = project(S_a)             (B, N, D)   token n = y·wc + x
//   L_gl = MSE(Y, T)             mean over B·N·D
//
// GPU tensors with need_projected = false (no discriminator reads Y): the GEMMs, the MSE and its gradient run in
// the fused kernel of retikd/kd/fused.hpp (Y is never materialised; `projected` stays undefined); shapes it
// cannot take fall back, logged, to the ops below.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/kd/fused.hpp"
#include "retikd/kd/grid.hpp"
#include "retikd/kd/losses.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/nn/module.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace kd {

enum class GlGrouping { spatial, channel };

inline const char* gl_grouping_name(GlGrouping g) { return g == GlGrouping::spatial ? "spatial" : "channel"; }
inline GlGrouping parse_gl_grouping(const std::string& s) {
  if (s == "spatial") return GlGrouping::spatial;
  if (s == "channel") return GlGrouping::channel;
  fail("unknown GL grouping '", s, "' (spatial, channel)");
}

struct GlConfig {
  GlGrouping grouping = GlGrouping::channel;
  int64_t in_channels = 0;        // C (filled by the distiller from the student tap)
  int64_t out_dim = 0;            // D, the teacher's token dimension
  int64_t groups = 8;             // channel: G
  int64_t block = 4;              // spatial: neighbourhood side
  int64_t grid_h = 0, grid_w = 0; // spatial: the common grid the maps are laid over
  GridAlign align = GridAlign::resize_teacher;
};

struct GlResult {
  Var loss;       // scalar L_gl
  Var projected;  // Y (B, N, D)
  Var target;     // T (B, N, D), the teacher patch tokens on the common grid
  int64_t grid_h = 0, grid_w = 0;
};

class GroupLinearProjector : public nn::Module {
 public:
  Var weight, bias;                    // spatial: (M, D, C), (M, D)
  std::shared_ptr<nn::Conv2d> proj;    // channel: grouped 1×1 convolution C → D

  GroupLinearProjector(const GlConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.in_channels > 0 && cfg.out_dim > 0, "GroupLinearProjector: in_channels (", cfg.in_channels,
                 ") and out_dim (", cfg.out_dim, ") must be positive");
    const int64_t C = cfg.in_channels, D = cfg.out_dim;
    if (cfg.grouping == GlGrouping::channel) {
      RETIKD_CHECK(cfg.groups > 0 && C % cfg.groups == 0 && D % cfg.groups == 0, "GroupLinearProjector: ",
                   cfg.groups, " channel groups must divide the student's ", C, " channels and the teacher's ", D,
                   " dimensions");
      proj = register_module("proj", std::make_shared<nn::Conv2d>(C, D, 1, gen,
                                                                   ops::Conv2dOptions().with_groups(cfg.groups)));
      return;
    }
    RETIKD_CHECK(cfg.block > 0 && cfg.grid_h > 0 && cfg.grid_w > 0, "GroupLinearProjector: spatial grouping needs "
                 "a positive block (", cfg.block, ") and the grid it is laid over (grid_h = ", cfg.grid_h,
                 ", grid_w = ", cfg.grid_w, ")");
    const int64_t M = num_maps();
    weight = register_parameter("weight", Tensor::zeros({M, D, C}));
    bias = register_parameter("bias", Tensor::zeros({M, D}));
    const double bound = 1.0 / std::sqrt(static_cast<double>(C));
    uniform_(weight.mutable_value(), -bound, bound, gen);
    uniform_(bias.mutable_value(), -bound, bound, gen);
    // Token indices of each group (row-major within the group), and where each token lands in the
    // group-major concatenation (to put the outputs back in grid order).
    std::vector<std::vector<int64_t>> members(static_cast<std::size_t>(M));
    for (int64_t y = 0; y < cfg.grid_h; ++y)
      for (int64_t x = 0; x < cfg.grid_w; ++x) members[static_cast<std::size_t>(group_of(y, x))].push_back(y * cfg.grid_w + x);
    std::vector<int64_t> position(static_cast<std::size_t>(cfg.grid_h * cfg.grid_w));
    int64_t at = 0;
    for (const auto& m : members) {
      group_index_.push_back(Tensor::from_vector(m, {static_cast<int64_t>(m.size())}));
      for (int64_t n : m) position[static_cast<std::size_t>(n)] = at++;
    }
    inverse_ = Tensor::from_vector(position, {static_cast<int64_t>(position.size())});
  }

  const GlConfig& config() const { return cfg_; }
  // Number of distinct linear maps: M (spatial) or G (channel).
  int64_t num_maps() const {
    if (cfg_.grouping == GlGrouping::channel) return cfg_.groups;
    return ceil_div(cfg_.grid_h, cfg_.block) * ceil_div(cfg_.grid_w, cfg_.block);
  }
  // The spatial group of grid position (y, x) (see the file comment).
  int64_t group_of(int64_t y, int64_t x) const {
    return (y / cfg_.block) * ceil_div(cfg_.grid_w, cfg_.block) + x / cfg_.block;
  }

  // Aligned student map (B, C, hc, wc) → Y (B, hc·wc, D).
  Var project(const Var& student_map) const {
    RETIKD_CHECK(student_map.dim() == 4 && student_map.size(1) == cfg_.in_channels, "GroupLinearProjector: "
                 "student map ", shape_str(student_map.shape()), " must be (B, ", cfg_.in_channels, ", h, w)");
    if (proj) return map_to_tokens(proj->forward(student_map));  // (B, N, D)
    RETIKD_CHECK(student_map.size(2) == cfg_.grid_h && student_map.size(3) == cfg_.grid_w, "GroupLinearProjector: "
                 "spatial maps were laid over a ", cfg_.grid_h, "x", cfg_.grid_w, " grid, got a ",
                 student_map.size(2), "x", student_map.size(3), " map");
    const int64_t D = cfg_.out_dim, C = cfg_.in_channels;
    Var tokens = map_to_tokens(student_map);  // (B, N, C)
    std::vector<Var> outs;
    for (std::size_t m = 0; m < group_index_.size(); ++m) {
      const int64_t mi = static_cast<int64_t>(m);
      Var xm = ops::index_select(tokens, 1, group_index_[m]);          // (B, n_m, C)
      Var wm = ops::reshape(ops::narrow(weight, 0, mi, 1), {D, C});     // (D, C)
      Var bm = ops::reshape(ops::narrow(bias, 0, mi, 1), {D});          // (D)
      outs.push_back(ops::linear(xm, wm, bm));                         // (B, n_m, D)
    }
    return ops::index_select(ops::concat(outs, 1), 1, inverse_);       // (B, N, D) in grid order
  }

  // L_gl for a student map (B, C, h, w) against the teacher block's patch tokens. need_projected = false lets a
  // GPU run use the fused kernel (see the file comment); the CPU path ignores it.
  GlResult forward(const Var& student_map, const TeacherFeatures& t, bool need_projected = true,
                   const Tensor& sample_weights = Tensor()) {
    RETIKD_CHECK(student_map.dim() == 4, "GroupLinearProjector: student map ", shape_str(student_map.shape()),
                 " must be (B, C, h, w)");
    const auto g = common_grid(cfg_.align, student_map.size(2), student_map.size(3), t.grid_h, t.grid_w);
    GlResult r;
    r.grid_h = g.first;
    r.grid_w = g.second;
    const Var aligned = resize_map(student_map, g.first, g.second);
    r.target = teacher_patch_tokens(t, g.first, g.second);  // (B, N, D)
    RETIKD_CHECK(r.target.size(2) == cfg_.out_dim, "GroupLinearProjector: built for ", cfg_.out_dim,
                 "-dimensional teacher tokens, got ", shape_str(r.target.shape()));
    if (!need_projected && aligned.value().is_cuda() && !sample_weights.defined()) {
      std::string why;
      if (proj || (aligned.size(2) == cfg_.grid_h && aligned.size(3) == cfg_.grid_w)) {
        FusedGlInputs in;
        in.s = aligned;
        in.w = proj ? proj->weight : weight;
        in.b = proj ? proj->bias : bias;
        in.t = r.target.detach();
        in.spatial = !proj;
        in.groups = cfg_.groups;
        in.block = cfg_.block;
        r.loss = fused_gl_loss(in, &why);
        if (r.loss.defined()) return r;
      } else {
        why = "the map is not on the grid the spatial maps were built for";
      }
      log_fused_fallback("GL projector (fused group-wise linear loss)", why);
    }
    r.projected = project(aligned);  // (B, N, D)
    r.loss = feature_mse_loss(r.projected, r.target, sample_weights);
    return r;
  }

 private:
  static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
  GlConfig cfg_;
  std::vector<Tensor> group_index_;  // spatial: token indices of each group (int64)
  Tensor inverse_;                   // spatial: grid token n → its row in the group-major concatenation
};

}  // namespace kd
}  // namespace retikd
