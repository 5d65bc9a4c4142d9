#include "core/networks/network.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/networks/network_blocks.h"

namespace dlab {

namespace nn = torch::nn;

std::string to_string(NetworkKind kind) { return kind == NetworkKind::UNet ? "unet" : "mlp"; }

namespace {

// `value` of `field` within [lo, hi], or a message naming them.
Status in_range(const char* field, int64_t value, int64_t lo, int64_t hi) {
    if (value >= lo && value <= hi) return Status::success();
    return Status::failure("network: " + std::string(field) + " is " + std::to_string(value) + "; allowed " +
                           std::to_string(lo) + " to " + std::to_string(hi));
}

}  // namespace

Status NetworkConfig::validate() const {
    // Ranges first: every later check may divide by these or size tensors with them.
    for (const Status& st : {in_range("in_channels", in_channels, 1, 64), in_range("num_classes", num_classes, 0, 100000)})
        if (!st) return st;
    if (!(dropout >= 0.0 && dropout < 1.0)) return Status::failure("network: dropout must be in [0, 1)");
    if (auto st = in_range("context_dim", context_dim, 0, 4096); !st) return st;
    if (auto st = in_range("frames", frames, 0, 1024); !st) return st;
    if (frames > 0 && kind != NetworkKind::UNet) return Status::failure("network: video (frames) needs a UNet");
    if (context_dim > 0) {
        if (kind != NetworkKind::UNet) return Status::failure("network: text conditioning (context_dim) needs a UNet");
        if (auto st = in_range("context_length", context_length, 1, 1024); !st) return st;
        if (num_classes != 0)
            return Status::failure("network: a text-conditional network has no classes (num_classes is " +
                                   std::to_string(num_classes) + ", must be 0)");
    }
    if (kind == NetworkKind::Mlp) {
        for (const Status& st : {in_range("mlp_hidden", mlp_hidden, 1, 65536), in_range("mlp_layers", mlp_layers, 1, 64)})
            if (!st) return st;
        return Status::success();
    }
    for (const Status& st : {in_range("image_size", image_size, 1, 4096), in_range("base_channels", base_channels, 1, 1024),
                             in_range("num_res_blocks", num_res_blocks, 1, 16), in_range("groups", groups, 1, 1024),
                             in_range("attention_heads", attention_heads, 1, 64),
                             in_range("channel_mult (levels)", int64_t(channel_mult.size()), 1, 8),
                             in_range("attention_resolutions (entries)", int64_t(attention_resolutions.size()), 0, 16)})
        if (!st) return st;
    for (int64_t m : channel_mult) {
        if (auto st = in_range("channel_mult", m, 1, 16); !st) return st;
        if ((base_channels * m) % groups != 0)
            return Status::failure("network: channels " + std::to_string(base_channels * m) +
                                   " not divisible by " + std::to_string(groups) + " GroupNorm groups");
        if ((base_channels * m) % attention_heads != 0)
            return Status::failure("network: channels not divisible by the attention heads");
    }
    int64_t size = image_size;
    for (size_t l = 0; l + 1 < channel_mult.size(); ++l) {
        if (size % 2 != 0)
            return Status::failure("network: image size " + std::to_string(image_size) +
                                   " cannot be halved " + std::to_string(channel_mult.size() - 1) +
                                   " times");
        size /= 2;
    }
    return Status::success();
}

int64_t NetworkConfig::min_parameters() const {
    if (kind == NetworkKind::Mlp) return (mlp_layers + 1) * mlp_hidden * mlp_hidden;  // time embedding + hidden layers
    // Each residual block of the encoder half ends in a 3x3 convolution c -> c at its level.
    int64_t n = 0;
    for (int64_t m : channel_mult) n += num_res_blocks * 9 * (base_channels * m) * (base_channels * m);
    return n;
}

int64_t NetworkConfig::min_activation_bytes() const {
    if (kind == NetworkKind::Mlp) return 4 * mlp_hidden * 2;
    // Every level keeps at least its residual blocks' outputs for the skip connections, and the
    // decoder half holds as many again: 2 (num_res_blocks + 1) maps of c x s x s per level.
    int64_t n = 0, s = image_size;
    for (int64_t m : channel_mult) {
        n += 2 * (num_res_blocks + 1) * base_channels * m * s * s;
        s = std::max<int64_t>(1, s / 2);
    }
    return 4 * n;
}

int64_t NetworkImpl::parameter_count() const {
    int64_t n = 0;
    for (const auto& p : parameters()) n += p.numel();
    return n;
}

namespace {
[[noreturn]] void not_text_conditional() {
    throw std::invalid_argument("network: this model is not text-conditional (it was trained without prompts)");
}
}  // namespace

void NetworkImpl::set_null_prompt(const at::Tensor&, const at::Tensor&) { not_text_conditional(); }
void NetworkImpl::set_prompts(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&) {
    not_text_conditional();
}
void NetworkImpl::record_attention(bool) {}
bool NetworkImpl::to_channels_last() { return false; }
bool NetworkImpl::to_half(at::ScalarType) { return false; }
std::vector<std::pair<int64_t, at::Tensor>> NetworkImpl::attention_maps() const { return {}; }

at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, double max_period) {
    const int64_t half = dim / 2;
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(t.device());
    const at::Tensor freqs = at::exp(-std::log(max_period) * at::arange(half, opts) / double(half));
    const at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
    at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, 1);
    if (dim % 2) emb = at::cat({emb, at::zeros({t.size(0), 1}, opts)}, 1);
    return emb;
}

namespace {

using blocks::Attention;
using blocks::CrossAttention;
using blocks::ResBlock;
using blocks::TemporalAttention;

class UNetImpl : public NetworkImpl {
public:
    explicit UNetImpl(const NetworkConfig& c) : cfg_(c) {
        const int64_t ch0 = c.base_channels, temb = 4 * ch0;
        temb1_ = register_module("temb1", nn::Linear(ch0, temb));
        temb2_ = register_module("temb2", nn::Linear(temb, temb));
        if (c.num_classes > 0) {
            label_emb_ = register_module("label_emb", nn::Embedding(c.num_classes + 1, temb));
        }
        conv_in_ = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(c.in_channels, ch0, 3).padding(1)));
        const bool text = c.context_dim > 0;
        if (text) {
            null_states_ = register_buffer("null_context", at::zeros({c.context_length, c.context_dim}));
            null_valid_ = register_buffer("null_context_valid", at::zeros({c.context_length}));
            null_valid_[0].fill_(1.0);
        }
        auto xattn = [&](const std::string& n, int64_t ch) {
            if (!text) return CrossAttention(nullptr);
            CrossAttention a = register_module(n + "_xattn", CrossAttention(ch, c.context_dim, c.attention_heads, c.groups));
            xattn_.push_back({res_of_next_, a});
            return a;
        };
        auto tattn = [&](const std::string& n, int64_t ch) {
            return c.frames > 0 ? register_module(n + "_tattn", TemporalAttention(ch, c.attention_heads, c.groups, c.frames))
                                : TemporalAttention(nullptr);
        };
        auto has_attn = [&](int64_t res) {
            for (int64_t r : c.attention_resolutions)
                if (r == res) return true;
            return false;
        };
        // Encoder.
        std::vector<int64_t> skip_ch = {ch0};
        int64_t ch = ch0, res = c.image_size;
        const size_t L = c.channel_mult.size();
        for (size_t l = 0; l < L; ++l) {
            const int64_t out = ch0 * c.channel_mult[l];
            for (int64_t b = 0; b < c.num_res_blocks; ++b) {
                const std::string n = "down" + std::to_string(l) + "_res" + std::to_string(b);
                res_of_next_ = res;
                down_.push_back({register_module(n, ResBlock(ch, out, temb, c.groups, c.dropout)),
                                 has_attn(res) ? register_module(n + "_attn", Attention(out, c.attention_heads, c.groups))
                                               : Attention(nullptr),
                                 nn::Conv2d(nullptr), has_attn(res) ? xattn(n, out) : CrossAttention(nullptr),
                                 has_attn(res) ? tattn(n, out) : TemporalAttention(nullptr)});
                ch = out;
                skip_ch.push_back(ch);
            }
            if (l + 1 < L) {
                const std::string n = "down" + std::to_string(l) + "_downsample";
                down_.push_back({ResBlock(nullptr), Attention(nullptr),
                                 register_module(n, nn::Conv2d(nn::Conv2dOptions(ch, ch, 3).stride(2).padding(1))),
                                 CrossAttention(nullptr)});
                skip_ch.push_back(ch);
                res /= 2;
            }
        }
        mid1_ = register_module("mid_res1", ResBlock(ch, ch, temb, c.groups, c.dropout));
        mid_attn_ = register_module("mid_attn", Attention(ch, c.attention_heads, c.groups));
        res_of_next_ = res;
        mid_xattn_ = xattn("mid", ch);
        mid_tattn_ = tattn("mid", ch);
        mid2_ = register_module("mid_res2", ResBlock(ch, ch, temb, c.groups, c.dropout));
        // Decoder: one more block per level, each taking a skip connection.
        for (size_t li = 0; li < L; ++li) {
            const size_t l = L - 1 - li;
            const int64_t out = ch0 * c.channel_mult[l];
            for (int64_t b = 0; b <= c.num_res_blocks; ++b) {
                const std::string n = "up" + std::to_string(l) + "_res" + std::to_string(b);
                const int64_t skip = skip_ch.back();
                skip_ch.pop_back();
                res_of_next_ = res;
                up_.push_back({register_module(n, ResBlock(ch + skip, out, temb, c.groups, c.dropout)),
                               has_attn(res) ? register_module(n + "_attn", Attention(out, c.attention_heads, c.groups))
                                             : Attention(nullptr),
                               nn::Conv2d(nullptr), has_attn(res) ? xattn(n, out) : CrossAttention(nullptr),
                               has_attn(res) ? tattn(n, out) : TemporalAttention(nullptr)});
                ch = out;
            }
            if (l > 0) {
                const std::string n = "up" + std::to_string(l) + "_upsample";
                up_.push_back({ResBlock(nullptr), Attention(nullptr),
                               register_module(n, nn::Conv2d(nn::Conv2dOptions(ch, ch, 3).padding(1))),
                               CrossAttention(nullptr)});
                res *= 2;
            }
        }
        for (auto* stages : {&down_, &up_})
            for (auto& st : *stages)
                if (st.res) st.res->temb_activated = true;
        mid1_->temb_activated = mid2_->temb_activated = true;
        norm_out_ = register_module("norm_out", nn::GroupNorm(c.groups, ch));
        conv_out_ = register_module("conv_out", nn::Conv2d(nn::Conv2dOptions(ch, c.out_channels(), 3).padding(1)));
        nn::init::zeros_(conv_out_->weight);
        nn::init::zeros_(conv_out_->bias);
    }

    at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels) override {
        at::Tensor emb = temb2_(at::silu(temb1_(timestep_embedding(t, cfg_.base_channels).to(dtype_))));
        if (label_emb_) {
            // An undefined label tensor means "unconditional": the null class.
            const at::Tensor y = labels.defined()
                                     ? labels
                                     : at::full({x.size(0)}, cfg_.num_classes,
                                                at::TensorOptions().dtype(at::kLong).device(x.device()));
            emb = emb + label_emb_(y);
        }
        if (cfg_.frames > 0 && x.size(0) % cfg_.frames != 0)
            throw std::invalid_argument("network: a video batch holds whole clips of " + std::to_string(cfg_.frames) +
                                        " frames; got " + std::to_string(x.size(0)) + " frames");
        // Every residual block takes SiLU(emb): taken once here (the blocks' temb_activated).
        const at::Tensor emb_act = at::silu(emb);
        at::Tensor ctx, valid;
        if (null_states_.defined()) text_context(x, labels, ctx, valid);
        std::vector<at::Tensor> hs;
        const bool nhwc = nhwc_ && x.is_cuda() && x.dim() == 4;  // inference, or channels-last training (trainer.cpp)
        // CUDA inference: every residual block's time-embedding projection from one matrix product;
        // the blocks take theirs in the order of res_order().
        const std::vector<at::Tensor> es = nhwc ? block_embeddings(emb_act) : std::vector<at::Tensor>();
        size_t ei = 0;
        auto e_next = [&] { return ei < es.size() ? es[ei++] : at::Tensor(); };
        const at::Tensor xin = x.to(dtype_);  // x itself unless to_half() was called
        at::Tensor h = nhwc && fused_first_conv_usable(xin, conv_in_->weight, conv_in_->bias)
                           ? fused_first_conv(xin, conv_in_->weight, conv_in_->bias)
                           : blocks::conv_bias(conv_in_, nhwc ? xin.contiguous(at::MemoryFormat::ChannelsLast) : xin, 1, 1);
        // One input channel: the input is plain and channels-last at once, and cuDNN answers in the
        // plain layout; the rest of the network (and the decoder's last concatenation) wants NHWC.
        if (nhwc && !h.is_contiguous(at::MemoryFormat::ChannelsLast)) h = h.contiguous(at::MemoryFormat::ChannelsLast);
        hs.push_back(h);
        for (auto& s : down_) {
            if (s.res) {
                h = s.res(h, emb_act, e_next());
                if (s.attn) h = s.attn(h);
                if (s.xattn) h = s.xattn(h, ctx, valid);
                if (s.tattn) h = s.tattn(h);
            } else {
                h = blocks::conv_bias(s.resample, h, 2, 1);
            }
            hs.push_back(h);
        }
        h = mid_attn_(mid1_(h, emb_act, e_next()));
        if (mid_xattn_) h = mid_xattn_(h, ctx, valid);
        if (mid_tattn_) h = mid_tattn_(h);
        h = mid2_(h, emb_act, e_next());
        for (auto& s : up_) {
            if (s.res) {
                h = s.res->forward_cat(h, hs.back(), emb_act, e_next());
                hs.pop_back();
                if (s.attn) h = s.attn(h);
                if (s.xattn) h = s.xattn(h, ctx, valid);
                if (s.tattn) h = s.tattn(h);
            } else {
                h = blocks::upsample_conv(s.resample, h, s.subpixel);
            }
        }
        const at::Tensor out = conv_out_(blocks::norm_silu(norm_out_, h));
        return nhwc_ || dtype_ != at::kFloat ? out.to(at::kFloat, false, false, at::MemoryFormat::Contiguous) : out;
    }
    const NetworkConfig& config() const override { return cfg_; }

    bool to_channels_last() override {
        // The text and video blocks reshape as [B, C, H * W]: they stay in the plain layout.
        if (cfg_.frames > 0 || cfg_.context_dim > 0) return false;
        torch::NoGradGuard g;
        for (auto& p : parameters())
            if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
        nhwc_ = true;
        return true;
    }

    bool to_half(at::ScalarType dtype) override {
        if (cfg_.frames > 0 || cfg_.context_dim > 0 || (dtype != at::kHalf && dtype != at::kBFloat16)) return false;
        torch::NoGradGuard g;
        // Parameter by parameter, keeping each one's layout (channels-last weights stay so).
        for (auto& p : parameters()) p.set_data(p.to(dtype));
        for (auto& b : buffers())
            if (b.is_floating_point()) b.set_data(b.to(dtype));
        dtype_ = dtype;
        return true;
    }

    void set_null_prompt(const at::Tensor& states, const at::Tensor& valid) override {
        require_text();
        check_prompts(states.unsqueeze(0), valid.unsqueeze(0), "the null prompt");
        torch::NoGradGuard g;
        null_states_.copy_(states);
        null_valid_.copy_(valid.to(at::kFloat));
    }
    void set_prompts(const at::Tensor& states, const at::Tensor& valid, const at::Tensor& negative,
                     const at::Tensor& negative_valid) override {
        require_text();
        check_prompts(states, valid, "the prompts");
        if (negative.defined()) check_prompts(negative, negative_valid, "the negative prompt");
        prompts_ = states.detach();
        prompts_valid_ = valid.to(at::kBool);
        negative_ = negative.defined() ? negative.detach() : at::Tensor();
        negative_valid_ = negative.defined() ? negative_valid.to(at::kBool) : at::Tensor();
    }
    void record_attention(bool on) override {
        for (auto& [res, a] : xattn_) {
            a->record = on;
            if (!on) a->weights = at::Tensor();
        }
    }
    std::vector<std::pair<int64_t, at::Tensor>> attention_maps() const override {
        std::vector<std::pair<int64_t, at::Tensor>> maps;
        for (const auto& [res, a] : xattn_)
            if (a->weights.defined()) maps.emplace_back(res, a->weights);
        std::stable_sort(maps.begin(), maps.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        return maps;
    }

private:
    // The residual blocks in the order forward() runs them.
    std::vector<ResBlock> res_order() const {
        std::vector<ResBlock> order;
        for (const auto& s : down_)
            if (s.res) order.push_back(s.res);
        order.push_back(mid1_);
        order.push_back(mid2_);
        for (const auto& s : up_)
            if (s.res) order.push_back(s.res);
        return order;
    }
    // Each residual block's temb_proj(SiLU(emb)) + conv1's bias, in res_order(), as column slices of
    // one matrix product with all the blocks' weights side by side (kept while the weights are
    // unchanged, blocks::Derived): one small GEMM where there were one a block (12 in the default
    // UNet). Inference only (autograd off); empty where not taken (DLAB_ONE_TEMB_GEMM=0, for
    // comparisons): the blocks then make their own.
    std::vector<at::Tensor> block_embeddings(const at::Tensor& emb_act) {
        static const bool on = !(std::getenv("DLAB_ONE_TEMB_GEMM") && std::string(std::getenv("DLAB_ONE_TEMB_GEMM")) == "0");
        if (!on || at::GradMode::is_enabled() || !emb_act.is_cuda()) return {};
        const std::vector<ResBlock> order = res_order();
        std::vector<at::Tensor> weights, from;
        for (const ResBlock& r : order) {
            weights.push_back(r->temb_proj->weight);
            from.push_back(r->temb_proj->bias);
            from.push_back(r->conv1->bias);
        }
        const at::Tensor w = temb_all_weight_.get(weights, [&] { return at::cat(weights, 0); });
        const at::Tensor b = temb_all_bias_.get(from, [&] {
            std::vector<at::Tensor> biases;
            for (const ResBlock& r : order) biases.push_back(r->temb_proj->bias + r->conv1->bias);
            return at::cat(biases, 0);
        });
        const at::Tensor all = at::linear(emb_act, w, b);
        std::vector<at::Tensor> es;
        int64_t at_col = 0;
        for (const ResBlock& r : order) {
            const int64_t n = r->temb_proj->weight.size(0);
            es.push_back(all.narrow(1, at_col, n));
            at_col += n;
        }
        return es;
    }
    void require_text() const {
        if (!null_states_.defined()) not_text_conditional();
    }
    void check_prompts(const at::Tensor& states, const at::Tensor& valid, const char* what) const {
        const int64_t L = cfg_.context_length, D = cfg_.context_dim;
        if (!states.defined() || states.dim() != 3 || states.size(1) != L || states.size(2) != D || !valid.defined() ||
            valid.dim() != 2 || valid.size(0) != states.size(0) || valid.size(1) != L)
            throw std::invalid_argument("network: " + std::string(what) + " must be token states [P, " +
                                        std::to_string(L) + ", " + std::to_string(D) + "] with a validity mask [P, " +
                                        std::to_string(L) + "] (the text encoder the model was trained with)");
        if (states.size(0) > 0 && !(valid.to(at::kBool).any(1).all().item<bool>()))
            throw std::invalid_argument("network: every row of " + std::string(what) + " needs a valid token");
    }
    // The token states and validity of each sample's prompt: label 0 the null (or negative)
    // prompt, label i the i-th prompt of the table; undefined labels are all null.
    void text_context(const at::Tensor& x, const at::Tensor& labels, at::Tensor& ctx, at::Tensor& valid) const {
        const auto dev = x.device();
        at::Tensor head = negative_.defined() ? negative_.to(dev) : null_states_.unsqueeze(0);
        at::Tensor head_valid = negative_.defined() ? negative_valid_.to(dev) : null_valid_.unsqueeze(0).gt(0.5);
        at::Tensor table = head, table_valid = head_valid;
        if (prompts_.defined() && prompts_.size(0) > 0) {
            table = at::cat({head, prompts_.to(dev, head.scalar_type())}, 0);
            table_valid = at::cat({head_valid, prompts_valid_.to(dev)}, 0);
        }
        const at::Tensor y = labels.defined() ? labels.to(dev, at::kLong)
                                              : at::zeros({x.size(0)}, at::TensorOptions().dtype(at::kLong).device(dev));
        if (y.numel() > 0 && (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= table.size(0)))
            throw std::invalid_argument("network: a prompt label is outside the prompt table (labels 0.." +
                                        std::to_string(table.size(0) - 1) + "; set the prompts first)");
        ctx = table.index_select(0, y);
        valid = table_valid.index_select(0, y);
    }

    struct Stage {
        ResBlock res;
        Attention attn;
        nn::Conv2d resample;
        CrossAttention xattn;
        TemporalAttention tattn{nullptr};
        blocks::Derived subpixel{};  // an upsampling stage's phase weights (blocks::upsample_conv)
    };
    int64_t res_of_next_ = 0;
    std::vector<std::pair<int64_t, CrossAttention>> xattn_;
    CrossAttention mid_xattn_{nullptr};
    TemporalAttention mid_tattn_{nullptr};
    at::Tensor null_states_, null_valid_;
    at::Tensor prompts_, prompts_valid_, negative_, negative_valid_;
    NetworkConfig cfg_;
    bool nhwc_ = false;  // to_channels_last() was called
    at::ScalarType dtype_ = at::kFloat;  // to_half() changes it
    nn::Linear temb1_{nullptr}, temb2_{nullptr};
    nn::Embedding label_emb_{nullptr};
    nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
    std::vector<Stage> down_, up_;
    ResBlock mid1_{nullptr}, mid2_{nullptr};
    Attention mid_attn_{nullptr};
    nn::GroupNorm norm_out_{nullptr};
    blocks::Derived temb_all_weight_, temb_all_bias_;  // block_embeddings()
};

// MLP denoiser for 2-D points: [x, embed(t), embed(label)] -> hidden layers with SiLU -> D.
class MlpImpl : public NetworkImpl {
public:
    explicit MlpImpl(const NetworkConfig& c) : cfg_(c) {
        const int64_t H = c.mlp_hidden;
        in_ = register_module("in", nn::Linear(c.in_channels + H, H));
        temb_ = register_module("temb", nn::Linear(H, H));
        if (c.num_classes > 0) label_emb_ = register_module("label_emb", nn::Embedding(c.num_classes + 1, H));
        for (int64_t i = 0; i < c.mlp_layers; ++i)
            hidden_.push_back(register_module("hidden" + std::to_string(i), nn::Linear(H, H)));
        out_ = register_module("out", nn::Linear(H, c.out_channels()));
    }
    at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels) override {
        at::Tensor e = temb_(timestep_embedding(t, cfg_.mlp_hidden));
        if (label_emb_) {
            const at::Tensor y = labels.defined()
                                     ? labels
                                     : at::full({x.size(0)}, cfg_.num_classes,
                                                at::TensorOptions().dtype(at::kLong).device(x.device()));
            e = e + label_emb_(y);
        }
        at::Tensor h = at::silu(in_(at::cat({x, e}, 1)));
        for (auto& l : hidden_) h = h + at::silu(l(h));
        return out_(h);
    }
    const NetworkConfig& config() const override { return cfg_; }

private:
    NetworkConfig cfg_;
    nn::Linear in_{nullptr}, temb_{nullptr}, out_{nullptr};
    nn::Embedding label_emb_{nullptr};
    std::vector<nn::Linear> hidden_;
};

}  // namespace

Result<Network> make_network(const NetworkConfig& config) {
    if (auto st = config.validate(); !st) return Error{st.error()};
    if (config.kind == NetworkKind::Mlp) return Network(std::make_shared<MlpImpl>(config));
    return Network(std::make_shared<UNetImpl>(config));
}

}  // namespace dlab
