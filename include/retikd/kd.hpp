// retikd/kd.hpp — what research code includes to distil a ViT teacher into a CNN student: the whole library
// (retikd.hpp). The distillation components (kd/: projectors, discriminator, multi-view generator, losses,
// trainer) join this header as they land.
#pragma once

#include "retikd/retikd.hpp"
