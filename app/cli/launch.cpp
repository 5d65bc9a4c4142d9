#include "app/cli/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "app/cli/cli_util.h"

extern char** environ;

namespace dlab::app {

namespace {

// The launcher's own options: they are not passed on to the ranks.
const char* const kLauncherOptions[] = {"nproc-per-node", "nnodes", "node-rank", "master-addr", "master-port"};

std::vector<std::string> without_launcher_options(const std::vector<std::string>& argv) {
    std::vector<std::string> out;
    for (size_t i = 0; i < argv.size(); ++i) {
        bool skip = false;
        for (const char* name : kLauncherOptions) {
            const std::string opt = std::string("--") + name;
            if (argv[i] == opt) {
                skip = true;
                ++i;  // and its value
                break;
            }
            if (argv[i].rfind(opt + "=", 0) == 0) {
                skip = true;
                break;
            }
        }
        if (!skip) out.push_back(argv[i]);
    }
    return out;
}

// A port nobody listens on now (the kernel's choice), for a run on this machine only.
int free_local_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 29500;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = 29500;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

std::vector<pid_t> g_children;  // for the signal handler: Ctrl-C reaches every rank

void forward_signal(int sig) {
    for (pid_t p : g_children)
        if (p > 0) ::kill(p, sig);
}

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                    strsignal(WTERMSIG(status)) + ")";
    return "ended";
}

}  // namespace

void add_distributed_options(Args& args) {
    args.option("nproc-per-node", "ranks to start on this machine (data-parallel; one per GPU)", "1")
        .option("nnodes", "machines in the run (start the same command on each, with its --node-rank)", "1")
        .option("node-rank", "this machine's index among --nnodes", "0")
        .option("master-addr", "address of the machine of rank 0 (several machines)", "127.0.0.1")
        .option("master-port", "port of rank 0's rendezvous store (default: a free port on one machine, 29500 on several)")
        .option("backend", "collectives: auto (NCCL on CUDA, Gloo on CPU), gloo or nccl", "auto")
        .option("dist-timeout", "seconds a rank waits for the others (rendezvous and each collective)", "300");
}

std::optional<int> launch_if_asked(const Args& args, const std::string& command, const std::vector<std::string>& argv) {
    auto nproc = args.get_int("nproc-per-node", 1, 1024);
    auto nnodes = args.get_int("nnodes", 1, 65536);
    if (!nproc) return usage(nproc.error());
    if (!nnodes) return usage(nnodes.error());
    auto node_rank = args.get_int("node-rank", 0, nnodes.value() - 1);
    if (!node_rank) return usage(node_rank.error());
    if (auto backend = parse_backend(args.get("backend")); !backend) return usage(command + ": --backend: " + backend.error());
    if (auto t = args.get_double("dist-timeout", 1, 86400); !t) return usage(t.error());
    const int world = static_cast<int>(nproc.value() * nnodes.value());
    if (world == 1) return std::nullopt;
    if (std::getenv("RANK") || std::getenv("WORLD_SIZE"))
        return usage(command + ": --nproc-per-node/--nnodes start ranks themselves; under torchrun, srun or a job "
                               "that sets RANK and WORLD_SIZE, leave them out");
    if (!distributed_available())
        return failure(command + ": this build has no distributed engine (c10d); it was configured without gloo's "
                                 "headers (Debian: apt install libgloo-dev, then rebuild)");
    int port = 0;
    if (args.given("master-port")) {
        auto p = args.get_int("master-port", 1, 65535);
        if (!p) return usage(p.error());
        port = static_cast<int>(p.value());
    } else {
        port = nnodes.value() == 1 ? free_local_port() : 29500;
    }
    const std::string addr = args.get("master-addr");
    const std::vector<std::string> rest = without_launcher_options(argv);

    std::vector<std::string> cmd{"/proc/self/exe", command};
    cmd.insert(cmd.end(), rest.begin(), rest.end());
    std::vector<char*> cargv;
    for (auto& s : cmd) cargv.push_back(s.data());
    cargv.push_back(nullptr);

    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const int threads = std::max(1, static_cast<int>(hw / nproc.value()));
    std::cerr << command << ": starting " << nproc.value() << " ranks on this machine (" << world << " in all, rendezvous at "
              << addr << ":" << port << ", " << (std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : std::to_string(threads))
              << " CPU threads each)\n";
    struct sigaction sa {};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int {}, old_term {};
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    std::map<pid_t, int> rank_of;
    g_children.assign(static_cast<size_t>(nproc.value()), 0);
    for (int local = 0; local < nproc.value(); ++local) {
        const int rank = static_cast<int>(node_rank.value() * nproc.value()) + local;
        std::map<std::string, std::string> env;
        for (char** e = environ; *e; ++e) {
            const std::string kv = *e;
            const auto eq = kv.find('=');
            if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        env["RANK"] = std::to_string(rank);
        env["LOCAL_RANK"] = std::to_string(local);
        env["WORLD_SIZE"] = std::to_string(world);
        env["LOCAL_WORLD_SIZE"] = std::to_string(nproc.value());
        env["MASTER_ADDR"] = addr;
        env["MASTER_PORT"] = std::to_string(port);
        if (!env.count("OMP_NUM_THREADS")) env["OMP_NUM_THREADS"] = std::to_string(threads);
        std::vector<std::string> kvs;
        for (const auto& [k, v] : env) kvs.push_back(k + "=" + v);
        std::vector<char*> cenv;
        for (auto& s : kvs) cenv.push_back(s.data());
        cenv.push_back(nullptr);
        pid_t pid = 0;
        const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargv.data(), cenv.data());
        if (rc != 0) {
            std::cerr << "diffusionlab-cli: " << command << ": cannot start rank " << rank << ": " << std::strerror(rc) << "\n";
            forward_signal(SIGTERM);
            for (pid_t p : g_children)
                if (p > 0) ::waitpid(p, nullptr, 0);
            return kRuntimeError;
        }
        g_children[static_cast<size_t>(local)] = pid;
        rank_of[pid] = rank;
    }

    // Wait for every rank. After the first failure the others get a grace period to notice it on
    // their own (their collectives fail and they say so), then are stopped.
    int code = 0;
    size_t running = rank_of.size();
    std::optional<std::chrono::steady_clock::time_point> failed_at;
    bool terminated = false;
    while (running > 0) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, failed_at ? WNOHANG : 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pid == 0) {  // polling after a failure
            const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - *failed_at).count();
            if (!terminated && waited > 30) {
                forward_signal(SIGTERM);
                terminated = true;
            } else if (waited > 40) {
                forward_signal(SIGKILL);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        auto it = rank_of.find(pid);
        if (it == rank_of.end()) continue;
        --running;
        for (auto& p : g_children)
            if (p == pid) p = 0;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && code == 0) {
            std::cerr << "diffusionlab-cli: " << command << ": rank " << it->second << " of " << world << " "
                      << describe_exit(status) << "; stopping the others\n";
            code = WIFEXITED(status) ? WEXITSTATUS(status) : kRuntimeError;
            failed_at = std::chrono::steady_clock::now();
        }
    }
    g_children.clear();
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    return code;
}

Result<std::shared_ptr<Communicator>> join_ranks(const Args& args, c10::Device& device) {
    auto info = rank_info_from_environment();
    if (!info) return Error{info.error()};
    // One process joins no group, unless a backend is named: a group of one runs every collective
    // of a data-parallel run (a check of the backend on a machine with one GPU).
    if (!info->distributed() && !args.given("backend")) return std::shared_ptr<Communicator>();
    auto backend = parse_backend(args.get("backend"));
    if (!backend) return Error{"--backend: " + backend.error()};
    auto timeout = args.get_double("dist-timeout", 1, 86400);
    if (!timeout) return Error{timeout.error()};
    if (device.is_cuda()) {
        const int devices = static_cast<int>(torch::cuda::device_count());
        if (info->local_rank >= devices)
            return Error{"rank " + std::to_string(info->rank) + ": LOCAL_RANK is " + std::to_string(info->local_rank) +
                         " but this machine has " + std::to_string(devices) + " CUDA device(s); start at most " +
                         std::to_string(devices) + " ranks per machine"};
        device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(info->local_rank));
    }
    // This node's CPU threads, shared between its ranks (unless OMP_NUM_THREADS says otherwise).
    const char* omp = std::getenv("OMP_NUM_THREADS");
    const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    at::set_num_threads(omp && std::atoi(omp) > 0 ? std::atoi(omp) : std::max(1, hw / info->local_world_size));
    return Communicator::connect(info.value(), backend.value(), device,
                                 std::chrono::milliseconds(static_cast<int64_t>(timeout.value() * 1000)));
}

}  // namespace dlab::app
