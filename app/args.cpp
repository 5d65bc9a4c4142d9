#include "app/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace dlab::app {

Args& Args::option(const std::string& name, const std::string& help,
                   std::optional<std::string> fallback) {
    order_.push_back(name);
    specs_[name] = Spec{help, false, std::move(fallback)};
    return *this;
}

Args& Args::flag(const std::string& name, const std::string& help) {
    order_.push_back(name);
    specs_[name] = Spec{help, true, std::nullopt};
    return *this;
}

Status Args::parse(const std::vector<std::string>& argv) {
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i] == "-o" ? std::string("--output") : argv[i];
        if (a.rfind("--", 0) != 0 || a.size() < 3) {
            return Status::failure(command_ + ": unexpected argument '" + a + "'");
        }
        std::string name = a.substr(2);
        std::optional<std::string> inline_value;
        if (auto eq = name.find('='); eq != std::string::npos) {
            inline_value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        auto it = specs_.find(name);
        if (it == specs_.end()) {
            return Status::failure(command_ + ": unknown option '--" + name + "' (see " +
                                   command_ + " --help)");
        }
        if (it->second.is_flag) {
            if (inline_value) return Status::failure(command_ + ": --" + name + " takes no value");
            values_[name] = "1";
            continue;
        }
        if (inline_value) {
            values_[name] = *inline_value;
        } else {
            // A value may start with '-' (a negative number or '-' for stdout) but not with "--".
            if (i + 1 >= argv.size() || argv[i + 1].rfind("--", 0) == 0) {
                return Status::failure(command_ + ": --" + name + " needs a value");
            }
            values_[name] = argv[++i];
        }
    }
    return Status::success();
}

bool Args::has(const std::string& name) const {
    if (values_.count(name)) return true;
    auto it = specs_.find(name);
    return it != specs_.end() && it->second.fallback.has_value();
}

std::string Args::get(const std::string& name) const {
    if (auto it = values_.find(name); it != values_.end()) return it->second;
    if (auto it = specs_.find(name); it != specs_.end() && it->second.fallback)
        return *it->second.fallback;
    return {};
}

Result<int64_t> Args::get_int(const std::string& name, int64_t lo, int64_t hi) const {
    const std::string text = get(name);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE) {
        return Error{command_ + ": --" + name + " expects an integer, got '" + text + "'"};
    }
    if (v < lo || v > hi) {
        return Error{command_ + ": --" + name + " must be between " + std::to_string(lo) + " and " +
                     std::to_string(hi) + ", got " + text};
    }
    return static_cast<int64_t>(v);
}

Result<double> Args::get_double(const std::string& name, double lo, double hi) const {
    const std::string text = get(name);
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
        return Error{command_ + ": --" + name + " expects a number, got '" + text + "'"};
    }
    if (v < lo || v > hi) {
        std::ostringstream s;
        s << command_ << ": --" << name << " must be between " << lo << " and " << hi << ", got "
          << text;
        return Error{s.str()};
    }
    return v;
}

namespace {

// Splits "a,b,c" and parses each item with `one` (a single-value getter on a scratch Args).
template <typename T, typename Parse>
Result<std::vector<T>> parse_list(const std::string& command, const std::string& name,
                                  const std::string& text, Parse one) {
    std::vector<T> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        Args scratch(command);
        scratch.option(name, "", item);
        auto v = one(scratch);
        if (!v) return Error{v.error()};
        out.push_back(v.value());
    }
    if (out.empty()) return Error{command + ": --" + name + " expects a comma-separated list"};
    return out;
}

}  // namespace

Result<std::vector<int64_t>> Args::get_int_list(const std::string& name, int64_t lo, int64_t hi) const {
    return parse_list<int64_t>(command_, name, get(name),
                               [&](const Args& a) { return a.get_int(name, lo, hi); });
}

Result<std::vector<double>> Args::get_double_list(const std::string& name, double lo, double hi) const {
    return parse_list<double>(command_, name, get(name),
                              [&](const Args& a) { return a.get_double(name, lo, hi); });
}

std::string Args::help() const {
    std::ostringstream s;
    for (const auto& name : order_) {
        const Spec& spec = specs_.at(name);
        std::string left = "  --" + name + (spec.is_flag ? "" : " VALUE");
        if (left.size() < 26) left.resize(26, ' ');
        s << left << " " << spec.help;
        if (spec.fallback) s << " (default: " << *spec.fallback << ")";
        s << "\n";
    }
    return s.str();
}

}  // namespace dlab::app
