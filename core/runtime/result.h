#pragma once
// Errors as values at the edges: a fallible call returns Result<T> carrying either the value or a
// message that names the thing and what is wrong with it.

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace dlab {

/// An error message for the user: names the thing (file, option, tensor) and the problem.
struct Error {
    std::string message;
};

/// Either a value of type T or an Error.
template <typename T>
class Result {
public:
    Result(T value) : data_(std::move(value)) {}                    // NOLINT: implicit on purpose
    Result(Error error) : data_(std::move(error)) {}                // NOLINT: implicit on purpose
    static Result failure(std::string message) { return Result(Error{std::move(message)}); }

    /// True when a value is held.
    bool ok() const { return std::holds_alternative<T>(data_); }
    explicit operator bool() const { return ok(); }

    /// The value; throws std::logic_error when this holds an error (a programming mistake).
    const T& value() const& {
        if (!ok()) throw std::logic_error("Result::value() on an error: " + error());
        return std::get<T>(data_);
    }
    T& value() & {
        if (!ok()) throw std::logic_error("Result::value() on an error: " + error());
        return std::get<T>(data_);
    }
    T&& value() && {
        if (!ok()) throw std::logic_error("Result::value() on an error: " + error());
        return std::get<T>(std::move(data_));
    }
    const T* operator->() const { return &value(); }
    T* operator->() { return &value(); }

    /// The error message, empty when a value is held.
    const std::string& error() const {
        static const std::string kEmpty;
        return ok() ? kEmpty : std::get<Error>(data_).message;
    }

private:
    std::variant<T, Error> data_;
};

/// Result of an operation that yields no value.
class Status {
public:
    Status() = default;
    Status(Error error) : error_(std::move(error.message)) {}  // NOLINT: implicit on purpose
    static Status success() { return {}; }
    static Status failure(std::string message) { return Status(Error{std::move(message)}); }
    bool ok() const { return !error_.has_value(); }
    explicit operator bool() const { return ok(); }
    const std::string& error() const {
        static const std::string kEmpty;
        return error_ ? *error_ : kEmpty;
    }

private:
    std::optional<std::string> error_;
};

}  // namespace dlab
