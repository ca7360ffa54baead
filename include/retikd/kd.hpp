// retikd/kd.hpp — what research code includes to distil a ViT teacher into a CNN student: the whole library
// (retikd.hpp), the models, and the distillation components of kd/ (docs/distillation.md):
//   PartialCrossAttentionProjector (kd/pca_projector.hpp), GroupLinearProjector (kd/gl_projector.hpp),
//   FeatureDiscriminator and the adversarial losses (kd/discriminator.hpp), MultiViewGenerator
//   (kd/multi_view.hpp), the loss terms and their weighting (kd/losses.hpp), grid alignment (kd/grid.hpp),
//   partial cross replacement (kd/partial_cross.hpp, kd/cross_mask.hpp), and CrossArchitectureDistiller with
//   its presets and teacher cache (kd/distiller.hpp).
#pragma once

#include "retikd/retikd.hpp"

#include "retikd/nn/models.hpp"

#include "retikd/kd/cross_mask.hpp"
#include "retikd/kd/discriminator.hpp"
#include "retikd/kd/distiller.hpp"
#include "retikd/kd/gl_projector.hpp"
#include "retikd/kd/grid.hpp"
#include "retikd/kd/losses.hpp"
#include "retikd/kd/multi_view.hpp"
#include "retikd/kd/partial_cross.hpp"
#include "retikd/kd/pca_projector.hpp"
