#pragma once
// A small command-line parser shared by diffusionlab and diffusionlab-cli: declared options,
// `--name value` or `--name=value`, flags, and clear errors for anything unknown or malformed.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/runtime/result.h"

namespace dlab::app {

class Args {
public:
    explicit Args(std::string command) : command_(std::move(command)) {}

    /// Declares `--name VALUE`; `fallback` is used when it is absent.
    Args& option(const std::string& name, const std::string& help,
                 std::optional<std::string> fallback = std::nullopt);
    /// Declares a flag `--name` (no value).
    Args& flag(const std::string& name, const std::string& help);

    /// Parses; an unknown option, a missing value or a stray argument is an error naming it.
    Status parse(const std::vector<std::string>& argv);

    bool has(const std::string& name) const;
    /// Whether the option was on the command line (not just its fallback).
    bool given(const std::string& name) const { return values_.count(name) > 0; }
    std::string get(const std::string& name) const;
    /// An integer in [lo, hi], or an error naming the option and the bad text.
    Result<int64_t> get_int(const std::string& name, int64_t lo, int64_t hi) const;
    /// A finite number in [lo, hi], or an error naming the option and the bad text.
    Result<double> get_double(const std::string& name, double lo, double hi) const;
    /// A comma-separated list of integers in [lo, hi].
    Result<std::vector<int64_t>> get_int_list(const std::string& name, int64_t lo, int64_t hi) const;

    /// A comma-separated list of numbers in [lo, hi].
    Result<std::vector<double>> get_double_list(const std::string& name, double lo, double hi) const;

    /// The options as help text.
    std::string help() const;

private:
    struct Spec {
        std::string help;
        bool is_flag = false;
        std::optional<std::string> fallback;
    };
    std::string command_;
    std::vector<std::string> order_;
    std::map<std::string, Spec> specs_;
    std::map<std::string, std::string> values_;
};

}  // namespace dlab::app
