// retikd/kd/grid.hpp — what the projectors read from the teacher, and how teacher tokens and student maps are
// brought onto one spatial grid (DESIGN.md §5: student 7×7 vs teacher 14×14 at 224 px).
//
// TeacherFeatures carries the taps of one ViT block: its tokens (before the final norm) and, when a
// configuration needs them, that block's per-head Q/K/V. Every helper here drops the prefix (CLS) tokens
// first, so the projectors only ever see patch tokens.
//
// Grid alignment (GridAlign), for a student map on an h×w grid and teacher tokens on a gh×gw grid:
//   resize_teacher           the common grid is the student's: teacher token maps are resized bilinearly
//                            (align_corners = false; 14→7 is then exactly a 2×2 average)
//   upsample_student         the common grid is the teacher's: the student map is resized bilinearly
//   student_at_teacher_grid  the student tap must already be on the teacher's grid (MobileNetV2 `stage4` at
//                            the teacher's 14×14): nothing is resized, a mismatch throws
// Tokens are numbered row-major over the grid: n = y·w + x.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace kd {

enum class GridAlign { resize_teacher, upsample_student, student_at_teacher_grid };

inline const char* grid_align_name(GridAlign a) {
  switch (a) {
    case GridAlign::resize_teacher: return "resize_teacher";
    case GridAlign::upsample_student: return "upsample_student";
    case GridAlign::student_at_teacher_grid: return "student_at_teacher_grid";
  }
  return "?";
}
inline GridAlign parse_grid_align(const std::string& s) {
  if (s == "resize_teacher") return GridAlign::resize_teacher;
  if (s == "upsample_student") return GridAlign::upsample_student;
  if (s == "student_at_teacher_grid") return GridAlign::student_at_teacher_grid;
  fail("unknown grid alignment '", s, "' (resize_teacher, upsample_student, student_at_teacher_grid)");
}

// The teacher side of one distillation step (Vars under NoGradGuard, or rebuilt from a TeacherCache).
struct TeacherFeatures {
  Var logits;       // (B, classes); undefined when no logit KD is configured
  Var tokens;       // (B, P + gh·gw, D) tokens of the distilled block, before the final norm
  Var q, k, v;      // (B, heads, P + gh·gw, d) that block's per-head queries / keys / values (when needed)
  int64_t prefix = 1;  // P: prefix (CLS) tokens in front of the patch tokens
  int64_t grid_h = 0, grid_w = 0;

  int64_t batch() const { return tokens.defined() ? tokens.size(0) : q.size(0); }
  int64_t dim() const { return tokens.size(2); }
};

// The common grid of a student map on h×w and teacher tokens on gh×gw under `align`.
inline std::pair<int64_t, int64_t> common_grid(GridAlign align, int64_t h, int64_t w, int64_t gh, int64_t gw) {
  switch (align) {
    case GridAlign::resize_teacher: return {h, w};
    case GridAlign::upsample_student: return {gh, gw};
    case GridAlign::student_at_teacher_grid:
      RETIKD_CHECK(h == gh && w == gw, "grid alignment student_at_teacher_grid: the student tap is ", h, "x", w,
                   " but the teacher grid is ", gh, "x", gw, "; tap a student stage with a ", gh, "x", gw,
                   " output (MobileNetV2 'stage4' at the teacher's image size) or use resize_teacher / "
                   "upsample_student");
      return {gh, gw};
  }
  fail("common_grid: unknown alignment");
}

// A (B, C, h, w) map resized bilinearly to (B, C, oh, ow); the map itself when the size already matches.
inline Var resize_map(const Var& map, int64_t oh, int64_t ow) {
  RETIKD_CHECK(map.dim() == 4, "resize_map: map ", shape_str(map.shape()), " must be (B, C, h, w)");
  if (map.size(2) == oh && map.size(3) == ow) return map;
  return ops::interpolate_bilinear(map, oh, ow, false);
}

// (B, C, h, w) → (B, h·w, C), token n = y·w + x.
inline Var map_to_tokens(const Var& map) {
  RETIKD_CHECK(map.dim() == 4, "map_to_tokens: map ", shape_str(map.shape()), " must be (B, C, h, w)");
  const int64_t B = map.size(0), C = map.size(1), N = map.size(2) * map.size(3);
  return ops::permute(ops::reshape(map, {B, C, N}), {0, 2, 1});  // (B, N, C)
}
// (B, N, C) → (B, C, h, w).
inline Var tokens_to_map(const Var& tokens, int64_t h, int64_t w) {
  RETIKD_CHECK(tokens.dim() == 3 && tokens.size(1) == h * w, "tokens_to_map: tokens ", shape_str(tokens.shape()),
               " do not hold a ", h, "x", w, " grid");
  const int64_t B = tokens.size(0), C = tokens.size(2);
  return ops::reshape(ops::permute(tokens, {0, 2, 1}), {B, C, h, w});  // (B, C, h, w)
}

// Patch tokens of the distilled block on an oh×ow grid: (B, P + gh·gw, D) → (B, oh·ow, D), contiguous.
inline Var teacher_patch_tokens(const TeacherFeatures& t, int64_t oh, int64_t ow) {
  RETIKD_CHECK(t.tokens.defined(), "teacher_patch_tokens: the teacher block's tokens are missing");
  const int64_t N = t.grid_h * t.grid_w;
  RETIKD_CHECK(t.tokens.dim() == 3 && t.tokens.size(1) == t.prefix + N, "teacher tokens ",
               shape_str(t.tokens.shape()), " do not hold ", t.prefix, " prefix + ", t.grid_h, "x", t.grid_w,
               " patch tokens");
  Var patches = ops::narrow(t.tokens, 1, t.prefix, N);                     // (B, gh·gw, D)
  if (oh == t.grid_h && ow == t.grid_w) return ops::contiguous(patches);
  Var map = tokens_to_map(patches, t.grid_h, t.grid_w);                    // (B, D, gh, gw)
  return ops::contiguous(map_to_tokens(resize_map(map, oh, ow)));          // (B, oh·ow, D)
}

// Per-head Q/K/V of the teacher on an oh×ow grid: (B, H, P + gh·gw, d) → (B, H, oh·ow, d), contiguous.
// Resizing treats the H·d channels of each head as a map over the grid.
inline Var teacher_heads(const Var& x, const TeacherFeatures& t, int64_t oh, int64_t ow, const char* what) {
  RETIKD_CHECK(x.defined(), "teacher_heads: the teacher block's ", what, " tap is missing (the configuration "
               "needs the per-head Q/K/V of the distilled block)");
  const int64_t N = t.grid_h * t.grid_w;
  RETIKD_CHECK(x.dim() == 4 && x.size(2) == t.prefix + N, "teacher ", what, " ", shape_str(x.shape()),
               " does not hold ", t.prefix, " prefix + ", t.grid_h, "x", t.grid_w, " tokens per head");
  const int64_t B = x.size(0), H = x.size(1), d = x.size(3);
  Var patches = ops::narrow(x, 2, t.prefix, N);  // (B, H, gh·gw, d)
  if (oh == t.grid_h && ow == t.grid_w) return ops::contiguous(patches);
  Var map = ops::reshape(ops::permute(patches, {0, 1, 3, 2}), {B, H * d, t.grid_h, t.grid_w});  // (B, H·d, gh, gw)
  Var r = resize_map(map, oh, ow);                                                             // (B, H·d, oh, ow)
  return ops::contiguous(ops::permute(ops::reshape(r, {B, H, d, oh * ow}), {0, 1, 3, 2}));     // (B, H, oh·ow, d)
}

}  // namespace kd
}  // namespace retikd
