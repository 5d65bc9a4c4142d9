#include "core/text/clip.h"

#include <cmath>

#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"
#include "core/sampling/sampler.h"
#include "core/training/train_support.h"

namespace dlab {

using json = nlohmann::json;

json to_json(const ClipConfig& c) {
    return json{{"width", c.width},           {"layers", c.layers},         {"heads", c.heads},
                {"embed_dim", c.embed_dim},   {"image_channels", c.image_channels},
                {"image_size", c.image_size}, {"in_channels", c.in_channels}};
}

Result<ClipConfig> clip_config_from_json(const json& j) {
    if (!j.is_object()) return Error{"the CLIP config is not a JSON object"};
    ClipConfig c;
    try {
        c.width = j.value("width", c.width);
        c.layers = j.value("layers", c.layers);
        c.heads = j.value("heads", c.heads);
        c.embed_dim = j.value("embed_dim", c.embed_dim);
        c.image_channels = j.value("image_channels", c.image_channels);
        c.image_size = j.value("image_size", c.image_size);
        c.in_channels = j.value("in_channels", c.in_channels);
    } catch (const std::exception& e) {
        return Error{std::string("the CLIP config has a value of the wrong type: ") + e.what()};
    }
    // Checked before anything is allocated from them.
    if (c.width < 8 || c.width > 4096 || c.heads < 1 || c.width % c.heads != 0)
        return Error{"the CLIP config's width must be in [8, 4096] and divisible by heads"};
    if (c.layers < 1 || c.layers > 64) return Error{"the CLIP config's layers must be in [1, 64]"};
    if (c.embed_dim < 2 || c.embed_dim > 4096) return Error{"the CLIP config's embed_dim must be in [2, 4096]"};
    if (c.image_channels < 8 || c.image_channels > 1024 || c.image_channels % 8 != 0)
        return Error{"the CLIP config's image_channels must be a multiple of 8 in [8, 1024]"};
    if (c.image_size < 8 || c.image_size > 1024 || c.in_channels < 1 || c.in_channels > 4)
        return Error{"the CLIP config's image size or channels are out of range"};
    return c;
}

TextEncoderImpl::TextEncoderImpl(const ClipConfig& c, int64_t vocab, int64_t context) : c_(c) {
    tok_ = register_module("tok", torch::nn::Embedding(vocab, c.width));
    pos_ = register_parameter("pos", torch::randn({context, c.width}) * 0.02);
    for (int64_t i = 0; i < c.layers; ++i) {
        Layer l;
        const std::string p = "layer" + std::to_string(i) + "_";
        l.ln1 = register_module(p + "ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
        l.qkv = register_module(p + "qkv", torch::nn::Linear(c.width, 3 * c.width));
        l.out = register_module(p + "out", torch::nn::Linear(c.width, c.width));
        l.ln2 = register_module(p + "ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
        l.fc1 = register_module(p + "fc1", torch::nn::Linear(c.width, 4 * c.width));
        l.fc2 = register_module(p + "fc2", torch::nn::Linear(4 * c.width, c.width));
        layers_.push_back(l);
    }
    ln_final_ = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
    proj_ = register_module("proj", torch::nn::Linear(torch::nn::LinearOptions(c.width, c.embed_dim).bias(false)));
}

torch::Tensor TextEncoderImpl::forward(const torch::Tensor& ids) {
    const int64_t B = ids.size(0), L = ids.size(1), H = c_.heads, d = c_.width / c_.heads;
    torch::Tensor h = tok_->forward(ids) + pos_.narrow(0, 0, L).unsqueeze(0);
    // Padding is never attended to; every real token sees every other one.
    const torch::Tensor pad = (ids == Tokenizer::kPad).view({B, 1, 1, L});
    for (auto& l : layers_) {
        const auto qkv = l.qkv->forward(l.ln1->forward(h)).view({B, L, 3, H, d}).permute({2, 0, 3, 1, 4});
        torch::Tensor att = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(double(d));
        att = att.masked_fill(pad, -1e9).softmax(-1);
        const torch::Tensor o = torch::matmul(att, qkv[2]).permute({0, 2, 1, 3}).reshape({B, L, c_.width});
        h = h + l.out->forward(o);
        h = h + l.fc2->forward(torch::gelu(l.fc1->forward(l.ln2->forward(h))));
    }
    return ln_final_->forward(h);
}

torch::Tensor TextEncoderImpl::embed(const torch::Tensor& ids) {
    const torch::Tensor states = forward(ids);
    const torch::Tensor eos = Tokenizer::eos_positions(ids);
    const torch::Tensor pooled = states.index({torch::arange(ids.size(0), ids.options()), eos});
    return torch::nn::functional::normalize(proj_->forward(pooled), torch::nn::functional::NormalizeFuncOptions().dim(1));
}

ImageEncoderImpl::ImageEncoderImpl(const ClipConfig& c) {
    const int64_t ch = c.image_channels;
    namespace nn = torch::nn;
    body_ = register_module(
        "body", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(c.in_channels, ch, 3).padding(1)), nn::GroupNorm(8, ch), nn::SiLU(),
                               nn::Conv2d(nn::Conv2dOptions(ch, 2 * ch, 3).stride(2).padding(1)), nn::GroupNorm(8, 2 * ch), nn::SiLU(),
                               nn::Conv2d(nn::Conv2dOptions(2 * ch, 4 * ch, 3).stride(2).padding(1)), nn::GroupNorm(8, 4 * ch), nn::SiLU(),
                               nn::Conv2d(nn::Conv2dOptions(4 * ch, 4 * ch, 3).padding(1)), nn::GroupNorm(8, 4 * ch), nn::SiLU()));
    proj_ = register_module("proj", nn::Linear(4 * ch, c.embed_dim));
}

torch::Tensor ImageEncoderImpl::forward(const torch::Tensor& x) {
    const torch::Tensor h = body_->forward(x).mean({2, 3});
    return torch::nn::functional::normalize(proj_->forward(h), torch::nn::functional::NormalizeFuncOptions().dim(1));
}

Clip make_clip(const ClipConfig& c) {
    Clip clip;
    clip.config = c;
    clip.text = TextEncoder(c, clip.tokenizer.vocab_size(), clip.tokenizer.context());
    clip.image = ImageEncoder(c);
    clip.logit_scale = torch::full({1}, std::log(1 / 0.07));
    clip.held_out = default_held_out();
    return clip;
}

Result<CaptionedData> caption_dataset(const LabelledData& data, const Tokenizer& tok, uint64_t seed,
                                      const std::vector<HeldOutPair>& held_out, const AttributeThresholds* thresholds) {
    if (data.x.dim() != 4 || data.num_classes != static_cast<int64_t>(fashion_class_words().size()))
        return Error{"captions: need the 10 Fashion-MNIST classes as images (got " + data.name + ")"};
    CaptionedData out;
    const at::Tensor measured = measure_attributes(data.x);
    out.thresholds = thresholds ? *thresholds : fit_attribute_thresholds(measured, data.labels, data.num_classes);
    out.levels = attribute_levels(measured, data.labels, out.thresholds).contiguous();
    const int64_t N = data.x.size(0);
    out.captions.reserve(static_cast<size_t>(N));
    const int64_t* lv = out.levels.data_ptr<int64_t>();
    const at::Tensor labels = data.labels.contiguous();
    const int64_t* lab = labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i)
        out.captions.push_back(make_caption(lab[i], lv + 3 * i, seed * 1000003ULL + static_cast<uint64_t>(i), held_out));
    auto ids = tok.encode_batch(out.captions);
    if (!ids) return Error{"captions: " + ids.error()};
    out.ids = ids.value();
    return out;
}

Result<Clip> train_clip(const LabelledData& data, const ClipConfig& c, const ClipTrainConfig& tc, c10::Device device,
                        const std::function<void(const ClipProgress&)>& on_progress, const std::atomic<bool>* cancel) {
    if (tc.steps < 1 || tc.batch < 2) return Error{"train-clip: steps must be >= 1 and the batch >= 2"};
    at::manual_seed(tc.seed);
    Clip clip = make_clip(c);
    // Each image gets a caption per epoch of captions: five sets drawn up front, one picked per step.
    std::vector<CaptionedData> sets;
    for (uint64_t k = 0; k < 5; ++k) {
        auto cd = caption_dataset(data, clip.tokenizer, tc.seed * 31 + k, clip.held_out, k == 0 ? nullptr : &sets[0].thresholds);
        if (!cd) return Error{"train-clip: " + cd.error()};
        sets.push_back(std::move(cd.value()));
    }
    clip.thresholds = sets[0].thresholds;
    clip.text->to(device);
    clip.image->to(device);
    clip.logit_scale = clip.logit_scale.to(device).set_requires_grad(true);
    std::vector<at::Tensor> params = clip.text->parameters();
    for (const auto& p : clip.image->parameters()) params.push_back(p);
    params.push_back(clip.logit_scale);
    AdamW opt;
    opt.init(params);
    const at::Tensor images = data.x.to(device);
    const int64_t N = images.size(0), B = std::min(tc.batch, N);
    double loss_sum = 0, acc_sum = 0;
    int64_t window = 0;
    for (int64_t step = 0; step < tc.steps; ++step) {
        if (cancel && cancel->load()) return Error{"cancelled"};
        at::Generator gen = make_generator(tc.seed * 7777ULL + static_cast<uint64_t>(step));
        const at::Tensor idx = at::randperm(N, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, B);
        const CaptionedData& set = sets[static_cast<size_t>(step % 5)];
        const at::Tensor ids = set.ids.index_select(0, idx).to(device);
        const at::Tensor x = images.index_select(0, idx.to(device));
        const at::Tensor ie = clip.image->forward(x), te = clip.text->embed(ids);
        const at::Tensor logits = clip.logit_scale.exp().clamp_max(100) * torch::matmul(ie, te.t());
        // Same caption, same target: duplicates in a batch are not pushed apart.
        const at::Tensor same = (ids.unsqueeze(1) == ids.unsqueeze(0)).all(2).to(at::kFloat);
        const at::Tensor target = same / same.sum(1, true);
        const at::Tensor loss = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() -
                                       (target * logits.t().log_softmax(1)).sum(1).mean());
        for (auto& p : params) p.mutable_grad() = at::Tensor();
        loss.backward();
        clip_gradients(params, 1.0);
        const double lr = tc.lr * std::min(1.0, double(step + 1) / double(std::max<int64_t>(1, tc.warmup))) *
                          0.5 * (1 + std::cos(M_PI * double(step) / double(tc.steps)));
        opt.step(step + 1, lr, 0.0);
        if ((step + 1) % tc.log_every == 0 || step + 1 == tc.steps) {
            const double l = loss.item<double>();
            if (!std::isfinite(l)) return Error{"train-clip: the loss became " + std::to_string(l) + " at step " + std::to_string(step + 1)};
            const at::Tensor hit = same.gather(1, logits.argmax(1, true));
            loss_sum += l;
            acc_sum += hit.mean().item<double>();
            ++window;
            if (on_progress) on_progress(ClipProgress{step + 1, tc.steps, loss_sum / window, acc_sum / window});
            loss_sum = acc_sum = 0;
            window = 0;
        }
    }
    clip.text->eval();
    clip.image->eval();
    clip.logit_scale = clip.logit_scale.detach();
    clip.training = json{{"steps", tc.steps}, {"batch", B}, {"lr", tc.lr}, {"seed", tc.seed}, {"device", device.str()},
                         {"dataset", data.name}, {"examples", N}};
    return clip;
}

at::Tensor clip_score(Clip& clip, const at::Tensor& images, const at::Tensor& ids, int64_t batch) {
    torch::NoGradGuard g;
    const auto device = clip.logit_scale.device();
    std::vector<at::Tensor> out;
    for (int64_t s = 0; s < images.size(0); s += batch) {
        const int64_t n = std::min(batch, images.size(0) - s);
        const at::Tensor ie = clip.image->forward(images.narrow(0, s, n).to(device, at::kFloat));
        const at::Tensor te = clip.text->embed(ids.narrow(0, s, n).to(device));
        out.push_back((100 * (ie * te).sum(1)).clamp_min(0).to(at::kCPU));
    }
    return at::cat(out);
}

at::Tensor zero_shot_classes(Clip& clip, const at::Tensor& images, int64_t batch) {
    torch::NoGradGuard g;
    const auto device = clip.logit_scale.device();
    std::vector<std::string> prompts;
    for (const auto& names : fashion_class_words()) prompts.push_back("a " + names.front());
    const at::Tensor te = clip.text->embed(clip.tokenizer.encode_batch(prompts).value().to(device));
    std::vector<at::Tensor> out;
    for (int64_t s = 0; s < images.size(0); s += batch) {
        const int64_t n = std::min(batch, images.size(0) - s);
        const at::Tensor ie = clip.image->forward(images.narrow(0, s, n).to(device, at::kFloat));
        out.push_back(torch::matmul(ie, te.t()).argmax(1).to(at::kCPU));
    }
    return at::cat(out);
}

Status save_clip(const std::string& path, const Clip& clip) {
    std::vector<at::Tensor> all = clip.text->parameters();
    for (const auto& p : clip.image->parameters()) all.push_back(p);
    all.push_back(clip.logit_scale);
    if (!all_finite(all)) return Status::failure(path + ": the CLIP weights are not finite; nothing was written");
    TensorFile f;
    TextEncoder text = clip.text;
    ImageEncoder image = clip.image;
    add_network_tensors(f, "text.", *text);
    add_network_tensors(f, "image.", *image);
    f.tensors["logit_scale"] = clip.logit_scale.detach().to(at::kCPU);
    f.tensors["thresholds.low"] = clip.thresholds.low.to(at::kCPU);
    f.tensors["thresholds.high"] = clip.thresholds.high.to(at::kCPU);
    json held = json::array();
    for (const auto& p : clip.held_out) held.push_back({{"class", p.cls}, {"attribute", p.attribute}, {"level", p.level}});
    json meta = {{"kind", "clip"},       {"config", to_json(clip.config)}, {"vocabulary", clip.tokenizer.words()},
                 {"context", clip.tokenizer.context()}, {"held_out", held}, {"training", clip.training}};
    f.metadata["dlab_clip"] = meta.dump();
    return save_safetensors(path, f);
}

PromptStates encode_prompt_ids(Clip& clip, const at::Tensor& ids) {
    torch::NoGradGuard g;
    const bool was_training = clip.text->is_training();
    clip.text->eval();
    const auto dev = clip.text->parameters().front().device();
    const at::Tensor on = ids.to(dev);
    PromptStates p{clip.text->forward(on), on != Tokenizer::kPad};
    if (was_training) clip.text->train();
    return p;
}

Result<PromptStates> encode_prompts(Clip& clip, const std::vector<std::string>& prompts) {
    for (const auto& prompt : prompts) {
        const auto unknown = clip.tokenizer.unknown_words(prompt);
        if (!unknown.empty()) {
            std::string words;
            for (const auto& w : unknown) words += (words.empty() ? "'" : ", '") + w + "'";
            return Error{"prompt \"" + prompt + "\": the text encoder does not know " + words +
                         " (it knows the words of the Fashion-MNIST captions: see `diffusionlab-cli models`)"};
        }
    }
    auto ids = clip.tokenizer.encode_batch(prompts);
    if (!ids) return Error{ids.error()};
    return encode_prompt_ids(clip, ids.value());
}

Result<Clip> load_clip(const std::string& path, c10::Device device) {
    auto f = load_safetensors(path);
    if (!f) return Error{f.error()};
    const auto it = f->metadata.find("dlab_clip");
    if (it == f->metadata.end()) return Error{path + ": not a CLIP file (no 'dlab_clip' metadata)"};
    const json meta = json::parse(it->second, nullptr, false);
    if (meta.is_discarded() || !meta.is_object()) return Error{path + ": the CLIP metadata is not valid JSON"};
    auto c = clip_config_from_json(meta.value("config", json::object()));
    if (!c) return Error{path + ": " + c.error()};
    Clip clip;
    clip.config = c.value();
    try {
        const auto words = meta.at("vocabulary").get<std::vector<std::string>>();
        const int64_t context = meta.at("context").get<int64_t>();
        if (words.size() < 5 || words.size() > 100000 || context < 3 || context > 1024)
            return Error{path + ": the CLIP vocabulary or context is out of range"};
        clip.tokenizer = Tokenizer(std::vector<std::string>(words.begin() + 4, words.end()), context);
        if (clip.tokenizer.vocab_size() != static_cast<int64_t>(words.size()))
            return Error{path + ": the CLIP vocabulary repeats a word"};
        for (const auto& h : meta.value("held_out", json::array()))
            clip.held_out.push_back({h.at("class").get<int64_t>(), h.at("attribute").get<int>(), h.at("level").get<int>()});
        for (const auto& h : clip.held_out)
            if (h.cls < 0 || h.cls >= 10 || h.attribute < 0 || h.attribute >= kCaptionAttributes || (h.level != -1 && h.level != 1))
                return Error{path + ": a held-out pair is out of range"};
        clip.training = meta.value("training", json::object());
    } catch (const std::exception& e) {
        return Error{path + ": the CLIP metadata is incomplete: " + e.what()};
    }
    // The config against the file's own tensors before any module is built from it: a config that
    // asks for more than the file holds is refused without allocating it.
    const ClipConfig& cc = clip.config;
    const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
        {"text.tok.weight", {clip.tokenizer.vocab_size(), cc.width}},
        {"text.pos", {clip.tokenizer.context(), cc.width}},
        {"text.layer" + std::to_string(cc.layers - 1) + "_fc2.weight", {cc.width, 4 * cc.width}},
        {"text.proj.weight", {cc.embed_dim, cc.width}},
        {"image.proj.weight", {cc.embed_dim, 4 * cc.image_channels}},
        {"logit_scale", {1}},
    };
    for (const auto& [name, shape] : expected) {
        const auto t = f->tensors.find(name);
        if (t == f->tensors.end()) return Error{path + ": the tensor '" + name + "' that the CLIP config implies is missing"};
        if (t->second.sizes().vec() != shape)
            return Error{path + ": the tensor '" + name + "' does not match the CLIP config (shape " +
                         c10::str(t->second.sizes()) + ", the config implies " + c10::str(at::IntArrayRef(shape)) + ")"};
    }
    clip.text = TextEncoder(clip.config, clip.tokenizer.vocab_size(), clip.tokenizer.context());
    clip.image = ImageEncoder(clip.config);
    if (auto st = load_network_tensors(f.value(), "text.", *clip.text, path); !st) return Error{st.error()};
    if (auto st = load_network_tensors(f.value(), "image.", *clip.image, path); !st) return Error{st.error()};
    for (const char* name : {"logit_scale", "thresholds.low", "thresholds.high"})
        if (!f->tensors.count(name)) return Error{path + ": the tensor '" + std::string(name) + "' is missing"};
    clip.logit_scale = f->tensors.at("logit_scale").to(device, at::kFloat).reshape({1});
    clip.thresholds.low = f->tensors.at("thresholds.low").to(at::kFloat);
    clip.thresholds.high = f->tensors.at("thresholds.high").to(at::kFloat);
    if (!clip.thresholds.low.sizes().equals({10, kCaptionAttributes}) || !clip.thresholds.high.sizes().equals({10, kCaptionAttributes}))
        return Error{path + ": the caption thresholds must be [10, 3]"};
    clip.text->to(device);
    clip.image->to(device);
    clip.text->eval();
    clip.image->eval();
    return clip;
}

}  // namespace dlab
