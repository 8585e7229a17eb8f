// optimizer_shards.hpp — ZeRO-1 ([run.distributed] zero_stage = 1): each trainable
// parameter's AdamW moments live on one rank, its owner, instead of on every rank. Every
// rank still receives the summed gradients (the all-reduce of plain data parallelism) and
// clips on the global norm; each then steps only the parameters it owns and hands the
// updated values to the others. The update is the one plain data parallelism makes,
// element for element; the moments take 1/ranks of the memory. Checkpoints hold the
// whole state, in one process's layout: rank 0 gathers it from the owners to write it.
#pragma once

#include "distributed/communicator.hpp"
#include "train/adamw.hpp"

#include <vector>

namespace fthost::host {

// The owner rank of each parameter: the largest first, each to the rank with the fewest
// elements so far (ties to the lowest rank) — balanced, and the same on every rank.
std::vector<int> assign_owners(const TensorList& params, int ranks);

// After each rank stepped the parameters it owns: every parameter becomes its owner's.
void share_updated_parameters(Communicator& comm, const TensorList& params, const std::vector<int>& owners);

// The whole optimizer state, in the order AdamW::state() of one process lists it, on rank
// 0 (every owner sends its parameters' entries); the other ranks get an empty list.
TensorList gather_optimizer_state(Communicator& comm, const AdamW& optimizer, const TensorList& params,
                                  const std::vector<int>& owners);

}  // namespace fthost::host
