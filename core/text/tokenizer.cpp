#include "core/text/tokenizer.h"

#include <cctype>
#include <set>

#include "core/text/captions.h"

namespace dlab {

std::vector<std::string> split_words(const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        while (!cur.empty() && cur.back() == '-') cur.pop_back();
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
    };
    for (unsigned char c : text) {
        if (std::isalnum(c)) {
            cur.push_back(static_cast<char>(std::tolower(c)));
        } else if (c == '-' && !cur.empty()) {
            cur.push_back('-');
        } else {
            flush();
        }
    }
    flush();
    return out;
}

Tokenizer::Tokenizer(const std::vector<std::string>& words, int64_t context) : context_(context) {
    words_ = {"<pad>", "<unk>", "<bos>", "<eos>"};
    for (const auto& w : words)
        if (!index_.count(w) && w.rfind('<', 0) != 0) {
            index_[w] = static_cast<int64_t>(words_.size());
            words_.push_back(w);
        }
    for (int64_t i = 0; i < 4; ++i) index_[words_[static_cast<size_t>(i)]] = i;
}

Tokenizer Tokenizer::fashion() {
    // Only words the captions use: any other word is <unk>, and said to be unknown.
    std::vector<std::string> words = {"a", "an", "photo", "image", "of"};
    for (const auto& a : caption_attributes()) {
        words.push_back(a.low);
        words.push_back(a.high);
    }
    for (const auto& names : fashion_class_words())
        for (const auto& n : names)
            for (const auto& w : split_words(n)) words.push_back(w);
    return Tokenizer(words, 16);
}

Result<at::Tensor> Tokenizer::encode(const std::string& text) const {
    const std::vector<std::string> w = split_words(text);
    if (static_cast<int64_t>(w.size()) + 2 > context_)
        return Error{"the prompt has " + std::to_string(w.size()) + " words; at most " + std::to_string(context_ - 2) +
                     " fit: \"" + text + "\""};
    at::Tensor ids = at::full({context_}, kPad, at::TensorOptions().dtype(at::kLong));
    auto* p = ids.data_ptr<int64_t>();
    p[0] = kBos;
    for (size_t i = 0; i < w.size(); ++i) {
        const auto it = index_.find(w[i]);
        p[i + 1] = it == index_.end() ? kUnk : it->second;
    }
    p[w.size() + 1] = kEos;
    return ids;
}

Result<at::Tensor> Tokenizer::encode_batch(const std::vector<std::string>& texts) const {
    std::vector<at::Tensor> rows;
    rows.reserve(texts.size());
    for (const auto& t : texts) {
        auto ids = encode(t);
        if (!ids) return Error{ids.error()};
        rows.push_back(ids.value());
    }
    if (rows.empty()) return at::zeros({0, context_}, at::TensorOptions().dtype(at::kLong));
    return at::stack(rows);
}

std::string Tokenizer::decode(const at::Tensor& ids) const {
    std::string out;
    const at::Tensor c = ids.to(at::kCPU, at::kLong).contiguous().view({-1});
    const int64_t* p = c.data_ptr<int64_t>();
    for (int64_t i = 0; i < c.numel(); ++i) {
        if (p[i] == kPad || p[i] == kBos || p[i] == kEos) continue;
        if (p[i] < 0 || p[i] >= vocab_size()) continue;
        if (!out.empty()) out += ' ';
        out += words_[static_cast<size_t>(p[i])];
    }
    return out;
}

std::vector<std::string> Tokenizer::unknown_words(const std::string& text) const {
    std::vector<std::string> out;
    for (const auto& w : split_words(text))
        if (!index_.count(w)) out.push_back(w);
    return out;
}

at::Tensor Tokenizer::eos_positions(const at::Tensor& ids) { return (ids == kEos).to(at::kLong).argmax(1); }

}  // namespace dlab
