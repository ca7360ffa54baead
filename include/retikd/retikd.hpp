// retikd/retikd.hpp — the whole library in one include: core, autograd, every op family, modules, optimizers.
// Research code that distils a teacher includes <retikd/kd.hpp>, which adds the distillation on top.
#pragma once

#include "retikd/core/device.hpp"
#include "retikd/core/dtype.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/half.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/paths.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/shape.hpp"
#include "retikd/core/tensor.hpp"

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/autograd/var.hpp"

#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/dropout.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/norm.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/ops/softmax.hpp"

#include "retikd/nn/module.hpp"
#include "retikd/optim/optim.hpp"
