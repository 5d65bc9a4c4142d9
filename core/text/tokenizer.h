#pragma once
// A word-level tokenizer: lower-cased words (letters, digits and inner hyphens), a fixed vocabulary
// with <pad>, <unk>, <bos> and <eos>, and a fixed context length. A prompt longer than the context
// is an error that says how many words fit; a word outside the vocabulary becomes <unk> and is
// reported, so a user sees which words the model does not know.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/runtime/result.h"

namespace dlab {

/// Lower-cased words of `text`: runs of letters and digits, joined by inner hyphens ("t-shirt").
std::vector<std::string> split_words(const std::string& text);

class Tokenizer {
public:
    static constexpr int64_t kPad = 0, kUnk = 1, kBos = 2, kEos = 3;

    /// A vocabulary of `words` (after the four special tokens, duplicates dropped) and a context of
    /// `context` tokens including <bos> and <eos>.
    Tokenizer(const std::vector<std::string>& words, int64_t context);
    /// The vocabulary of the Fashion-MNIST captions (captions.h), context 16.
    static Tokenizer fashion();

    int64_t vocab_size() const { return static_cast<int64_t>(words_.size()); }
    int64_t context() const { return context_; }
    const std::vector<std::string>& words() const { return words_; }  ///< id -> word, specials first

    /// [context] int64 ids: <bos> words <eos> <pad>...; an error when the words do not fit.
    Result<at::Tensor> encode(const std::string& text) const;
    /// [N, context] for many texts; the first that does not fit is an error naming it.
    Result<at::Tensor> encode_batch(const std::vector<std::string>& texts) const;
    /// The words of ids (specials left out, <unk> shown as "<unk>").
    std::string decode(const at::Tensor& ids) const;
    /// Words of `text` outside the vocabulary.
    std::vector<std::string> unknown_words(const std::string& text) const;
    /// Position of <eos> in each row of ids [N, context] (the pooled token of the text encoder).
    static at::Tensor eos_positions(const at::Tensor& ids);

private:
    std::vector<std::string> words_;
    std::map<std::string, int64_t> index_;
    int64_t context_;
};

}  // namespace dlab
