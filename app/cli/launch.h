#pragma once
// Running a command on several ranks: `--nproc-per-node N` starts N copies of this command as
// local ranks with torchrun's environment contract (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT); under torchrun, Slurm or Kubernetes (the contract already set) the
// command joins the run as the rank it was given.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "app/args.h"
#include "core/distributed/distributed.h"

namespace dlab::app {

/// Declares --nproc-per-node, --nnodes, --node-rank, --master-addr, --master-port, --backend and
/// --dist-timeout on a command.
void add_distributed_options(Args& args);

/// When the options ask for more than one rank and this process is not a rank yet, starts the
/// ranks of this node (this program with `argv` minus the launcher's own options), waits for them
/// and returns the exit code: 0 when every rank succeeded, else the first failure's code after
/// naming that rank. Returns nothing when this process should run the command itself. A bad
/// option value returns the usage error's exit code.
std::optional<int> launch_if_asked(const Args& args, const std::string& command, const std::vector<std::string>& argv);

/// This process's rank: nullptr for a single process; otherwise connected to the other ranks (on
/// CUDA, `device` becomes cuda:LOCAL_RANK). Sets the CPU threads to this node's share.
Result<std::shared_ptr<Communicator>> join_ranks(const Args& args, c10::Device& device);

}  // namespace dlab::app
