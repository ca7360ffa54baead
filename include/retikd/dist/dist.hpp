// retikd/dist/dist.hpp — data parallelism in one include: process groups (LocalGroup; MpiGroup with
// RETIKD_WITH_MPI; NcclGroup with RETIKD_WITH_NCCL), dist::Session, the gradient reducer and its helpers, and
// synchronised batch norm. docs/distributed.md describes the design, the launch commands and the measurements.
#pragma once

#include "retikd/dist/data_parallel.hpp"
#include "retikd/dist/mpi.hpp"
#include "retikd/dist/nccl.hpp"
#include "retikd/dist/process_group.hpp"
#include "retikd/dist/session.hpp"
#include "retikd/dist/sync_batchnorm.hpp"
