// Generation: the KV cache changes nothing (greedy tokens equal those of recomputing the
// prefix every step, for prompts of different lengths in one batch; hidden states equal
// whether the cache was reserved or grew), decode steps replayed from a CUDA graph give
// the eager tokens, sampling is reproducible from its seed, and top-k / top-p / stop
// strings do what they say.
#include "generate/decode_graph.hpp"
#include "generate/generator.hpp"
#include "test_support.hpp"

#include <fthost/torch.hpp>


#include <set>

namespace fthost::test {
namespace {

std::vector<std::vector<int64_t>> prompts_of(const std::vector<std::string>& texts) {
    const TextCodec& tok = *TextCodec::bytes();
    std::vector<std::vector<int64_t>> out;
    for (const auto& t : texts) out.push_back(tok.encode(t, false));
    return out;
}

TEST(Generate, GreedyWithKvCacheEqualsRecomputingThePrefix) {
    auto model = tiny_model(11);
    ASSERT_TRUE(model->supports_kv_cache());
    // Adapted sites too: the cache path must go through installed forwards.
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\ntarget_modules = [\"all-linear\"]\ninit_lora_weights = \"gaussian\""));
    {
        at::NoGradGuard ng;  // B = 0 after init: give the adapter a visible effect
        for (auto& [name, t] : model->trainable_parameters()) t.normal_(0, 0.2);
    }
    const auto prompts = prompts_of({"a", "query: milk\ncategory:", "xyz", "the quick brown fox jumps"});
    SamplingOptions o;
    o.max_new_tokens = 24;
    o.stop_ids = std::vector<int64_t>{};  // run every row to the end
    const TextCodec& tok = *TextCodec::bytes();
    for (int64_t batch : {1, 3, 4}) {
        o.use_cache = true;
        const auto cached = generate(*model, prompts, o, batch, tok);
        o.use_cache = false;
        const auto plain = generate(*model, prompts, o, batch, tok);
        for (size_t i = 0; i < prompts.size(); ++i) {
            EXPECT_EQ(cached[i].tokens, plain[i].tokens) << "prompt " << i << " batch " << batch;
            EXPECT_EQ(cached[i].tokens.size(), 24u);
            EXPECT_EQ(cached[i].finish_reason, "length");
        }
    }
}

// A sliding window: each token sees the last 4 tokens, itself included, whether its
// prefix is recomputed (left-padded rows, a mask) or cached (the cache's mask) — on every
// layer (Mistral) or on alternate ones with Gemma 2's soft-capped eager attention — and
// the window is felt: without it the same weights decode otherwise.
TEST(Generate, ASlidingWindowHoldsWithAndWithoutTheCache) {
    const auto model_with = [](const std::string& extra) {
        at::manual_seed(11);
        return std::make_unique<ModelSession>(plugin(FT_KIND_MODEL, "decoder", std::string(kTinyDecoder) + extra), registry(),
                                              at::Device(at::kCPU));
    };
    const std::string gemma2 =
        "hidden_act = \"gelu_tanh\"\nnorm_plus_one = true\nembedding_scale = true\nsandwich_norms = true\n"
        "query_pre_attn_scalar = 12.0\nattn_logit_softcapping = 5.0\nfinal_logit_softcapping = 3.0\n";
    for (const auto& [windowed_options, plain_options] :
         std::vector<std::pair<std::string, std::string>>{
             {"sliding_window = 4\n", ""},
             {gemma2 + "sliding_window = 4\nlayer_types = [\"sliding_attention\", \"full_attention\"]\n", gemma2}}) {
        SCOPED_TRACE(windowed_options);
        auto windowed = model_with(windowed_options), full = model_with(plain_options);
        const auto prompts = prompts_of({"a", "query: milk\ncategory:", "xyz", "the quick brown fox jumps"});
        SamplingOptions o;
        o.max_new_tokens = 16;
        o.stop_ids = std::vector<int64_t>{};
        const TextCodec& tok = *TextCodec::bytes();
        bool felt = false;
        for (int64_t batch : {1, 4}) {
            o.use_cache = true;
            const auto cached = generate(*windowed, prompts, o, batch, tok);
            o.use_cache = false;
            const auto recomputed = generate(*windowed, prompts, o, batch, tok);
            const auto unwindowed = generate(*full, prompts, o, batch, tok);
            for (size_t i = 0; i < prompts.size(); ++i) {
                EXPECT_EQ(cached[i].tokens, recomputed[i].tokens) << "prompt " << i << " batch " << batch;
                felt = felt || cached[i].tokens != unwindowed[i].tokens;
            }
        }
        EXPECT_TRUE(felt) << "the window changed no token: it was not applied";
    }
}

// A GRPO group's samples share one prefill: the cache is prefilled once per distinct
// prompt and its rows repeated, and the sampled tokens are those of prefilling every
// sample on its own.
TEST(Generate, SamplesOfOnePromptShareItsPrefill) {
    auto model = tiny_model(13);
    std::vector<std::vector<int64_t>> prompts;
    for (const auto& p : prompts_of({"query: milk\ncategory:", "a", "the quick brown fox"}))
        for (int g = 0; g < 4; ++g) prompts.push_back(p);
    SamplingOptions o;
    o.max_new_tokens = 12;
    o.temperature = 1.0;
    o.seed = 5;
    o.stop_ids = std::vector<int64_t>{};
    const TextCodec& tok = *TextCodec::bytes();
    GenerationStats shared, alone;
    const auto a = generate(*model, prompts, o, 12, tok, &shared);
    o.share_prefill = false;
    const auto b = generate(*model, prompts, o, 12, tok, &alone);
    EXPECT_EQ(shared.prefill_rows, 3);
    EXPECT_EQ(alone.prefill_rows, 12);
    std::set<std::vector<int64_t>> distinct;
    for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(a[i].tokens, b[i].tokens) << "row " << i;
        distinct.insert(a[i].tokens);
    }
    EXPECT_GT(distinct.size(), 3u);  // the samples of a prompt differ: rows were repeated, not merged
}

TEST(Generate, KvCacheRowsCanBeRepeatedAndReordered) {
    fthost::KvCache cache;
    const at::Tensor valid = at::tensor({1, 1, 0, 1, 1, 1}, at::kLong).to(at::kBool).view({2, 3});
    cache.extend(valid);
    const at::Tensor k = at::arange(2 * 3 * 2, at::kFloat).view({2, 1, 3, 2});
    cache.append(0, k, k + 100);
    cache.set_cross(0, at::arange(2 * 4, at::kFloat).view({2, 1, 4, 1}), at::zeros({2, 1, 4, 1}));
    cache.set_cross_valid(at::tensor({1, 1, 1, 0, 1, 1, 1, 1}, at::kLong).to(at::kBool).view({2, 4}));
    cache.select_rows(at::tensor({1, 0, 1}, at::kLong));
    const at::Tensor next = at::ones({3, 1}, at::kBool);
    const at::Tensor mask = cache.extend(next);
    const auto [k2, v2] = cache.append(0, at::zeros({3, 1, 1, 2}), at::zeros({3, 1, 1, 2}));
    EXPECT_TRUE(k2.narrow(2, 0, 3).select(0, 0).equal(k.select(0, 1)));
    EXPECT_TRUE(k2.narrow(2, 0, 3).select(0, 1).equal(k.select(0, 0)));
    EXPECT_TRUE(k2.narrow(2, 0, 3).select(0, 2).equal(k.select(0, 1)));
    // Row 1 is old row 0, whose third token was padding: the new token may not see it.
    EXPECT_FALSE(mask[1][0][0][2].item<bool>());
    EXPECT_TRUE(mask[0][0][0][2].item<bool>());
    EXPECT_TRUE(cache.cross(0).first.select(0, 1).equal(at::arange(4, at::kFloat).view({1, 4, 1})));
    EXPECT_EQ(cache.cross_mask().sizes(), (at::IntArrayRef{3, 1, 1, 4}));
    EXPECT_FALSE(cache.cross_mask()[1][0][0][3].item<bool>());
    EXPECT_THROW(cache.cross(1), fthost::Error);
}

// Rows of ids [B, T] with the first `pad[r]` columns of row r padding.
HostBatch rows_batch(const at::Tensor& ids, const std::vector<int64_t>& pad, int64_t first_position) {
    HostBatch b;
    const int64_t B = ids.size(0), T = ids.size(1);
    b.input_ids = ids.clone();
    b.position_ids = at::zeros({B, T}, at::kLong);
    b.sequence_ids = at::zeros({B, T}, at::kLong);
    for (int64_t r = 0; r < B; ++r)
        for (int64_t t = 0; t < T; ++t) {
            const int64_t p = first_position + t - pad[r];
            b.position_ids[r][t] = std::max<int64_t>(p, 0);
            if (p < 0) b.sequence_ids[r][t] = -1;
        }
    b.labels = at::full({B, T}, -100, at::kLong);
    return b;
}

TEST(Generate, CachedHiddenStatesEqualTheFullForwardWhetherReservedOrGrown) {
    auto model = tiny_model(14);
    at::NoGradGuard ng;
    model->set_training(false);
    const int64_t B = 2, P = 3, steps = 21;  // an unreserved cache grows 3 -> 6 -> 12 -> 24
    const std::vector<int64_t> pad = {0, 2};
    at::manual_seed(3);
    const at::Tensor ids = at::randint(0, 256, {B, P + steps}, at::kLong);
    HostBatch full = rows_batch(ids, pad, 0);
    const at::Tensor reference = model->hidden_states(full);  // [B, P + steps, H]
    for (const bool reserve : {true, false}) {
        auto cache = model->new_kv_cache();
        if (reserve) ASSERT_TRUE(model->reserve_kv_cache(cache.get(), P + steps));
        HostBatch prompt = rows_batch(ids.narrow(1, 0, P), pad, 0);
        std::vector<at::Tensor> got = {model->hidden_states_cached(cache.get(), prompt)};
        for (int64_t t = P; t < P + steps; ++t) {
            HostBatch one = rows_batch(ids.narrow(1, t, 1), pad, t);
            got.push_back(model->hidden_states_cached(cache.get(), one));
        }
        const at::Tensor cached = at::cat(got, 1);
        // Padding positions attend only to themselves in the cache; compare real tokens.
        const at::Tensor real = full.sequence_ids.ge(0).unsqueeze(-1);
        EXPECT_LT((cached - reference).abs().masked_fill(real.logical_not(), 0).max().item<double>(), 1e-5)
            << (reserve ? "reserved" : "grown");
    }
}

TEST(Generate, KvCacheWritesInPlaceAndGrowsByDoubling) {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    fthost::KvCache reserved;
    reserved.reserve(10);
    at::Tensor mask = reserved.extend(at::ones({1, 4}, at::kBool));
    EXPECT_EQ(reserved.capacity(), 10);
    EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{1, 1, 4, 10}));
    const at::Tensor k = at::randn({1, 2, 4, 8}, opts), v = at::randn({1, 2, 4, 8}, opts);
    auto [ks, vs] = reserved.append(0, k, v);
    EXPECT_TRUE(ks.narrow(2, 0, 4).equal(k));
    EXPECT_TRUE(vs.narrow(2, 4, 6).eq(0).all().item<bool>());  // unwritten slots hold zeros
    const void* storage = ks.data_ptr();
    for (int i = 0; i < 6; ++i) {
        mask = reserved.extend(at::ones({1, 1}, at::kBool));
        std::tie(ks, vs) = reserved.append(0, at::full({1, 2, 1, 8}, i, opts), at::zeros({1, 2, 1, 8}, opts));
    }
    EXPECT_EQ(ks.data_ptr(), storage);  // filled to the reservation without moving
    EXPECT_EQ(reserved.length(), 10);
    EXPECT_TRUE(mask.all().item<bool>());
    EXPECT_EQ(ks.select(2, 9).eq(5).all().item<bool>(), true);

    fthost::KvCache grown;
    std::vector<int64_t> capacities;
    for (int i = 0; i < 9; ++i) {
        grown.extend(at::ones({1, 1}, at::kBool));
        grown.append(0, at::zeros({1, 1, 1, 2}, opts), at::zeros({1, 1, 1, 2}, opts));
        capacities.push_back(grown.capacity());
    }
    EXPECT_EQ(capacities, (std::vector<int64_t>{1, 2, 4, 4, 8, 8, 8, 8, 16}));
}

TEST(Generate, DecodeStepsReplayedFromACudaGraphGiveTheEagerTokens) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device here; this check runs on a GPU machine";
    auto model = tiny_model(15, at::Device(at::kCUDA, 0));
    ASSERT_TRUE(DecodeGraph::available(*model));
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\ntarget_modules = [\"all-linear\"]\ninit_lora_weights = \"gaussian\""));
    {
        at::NoGradGuard ng;
        for (auto& [name, t] : model->trainable_parameters()) t.normal_(0, 0.2);
    }
    const auto prompts = prompts_of({"a", "query: milk\ncategory:", "xyz", "the quick brown fox jumps"});
    const TextCodec& tok = *TextCodec::bytes();
    for (const double temperature : {0.0, 1.0}) {
        SamplingOptions o;
        o.max_new_tokens = 24;
        o.temperature = temperature;
        o.seed = 9;
        o.stop_ids = std::vector<int64_t>{};
        GenerationStats with, without;
        const auto replayed = generate(*model, prompts, o, 3, tok, &with);  // batches of 3 and 1
        o.cuda_graphs = false;
        const auto eager = generate(*model, prompts, o, 3, tok, &without);
        for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(replayed[i].tokens, eager[i].tokens) << "prompt " << i;
        EXPECT_EQ(with.graph_replays, 2 * (24 - 2));  // step 0 prefills, step 1 warms up
        EXPECT_EQ(without.graph_replays, 0);
    }
}

TEST(Generate, SamplingIsReproducibleFromItsSeed) {
    auto model = tiny_model(12);
    const auto prompts = prompts_of({"hello", "a longer prompt"});
    SamplingOptions o;
    o.max_new_tokens = 16;
    o.temperature = 1.0;
    o.stop_ids = std::vector<int64_t>{};
    const TextCodec& tok = *TextCodec::bytes();
    o.seed = 5;
    const auto a = generate(*model, prompts, o, 2, tok), b = generate(*model, prompts, o, 2, tok);
    o.seed = 6;
    const auto c = generate(*model, prompts, o, 2, tok);
    EXPECT_EQ(a[0].tokens, b[0].tokens);
    EXPECT_EQ(a[1].tokens, b[1].tokens);
    EXPECT_NE(a[0].tokens, c[0].tokens);
    // top_k = 1 is greedy whatever the temperature.
    o.top_k = 1;
    const auto k1 = generate(*model, prompts, o, 2, tok);
    SamplingOptions g = o;
    g.temperature = 0;
    g.top_k = 0;
    EXPECT_EQ(k1[0].tokens, generate(*model, prompts, g, 2, tok)[0].tokens);
}

TEST(Generate, APromptSamplesTheSameTokensWhateverBatchItIsIn) {
    // Each prompt draws from its own generator (seed, first_row + i): batch size, the
    // other prompts and a rank's offset into the generation batch change nothing — what
    // lets N ranks sample what one process samples.
    auto model = tiny_model(12);
    const auto prompts = prompts_of({"hello", "a longer prompt", "xy", "the quick brown fox"});
    const TextCodec& tok = *TextCodec::bytes();
    SamplingOptions o;
    o.max_new_tokens = 12;
    o.temperature = 1.0;
    o.seed = 7;
    o.stop_ids = std::vector<int64_t>{};
    const auto whole = generate(*model, prompts, o, 4, tok);
    const auto one_by_one = generate(*model, prompts, o, 1, tok);
    SamplingOptions second_half = o;
    second_half.first_row = 2;
    const auto tail = generate(*model, {prompts[2], prompts[3]}, second_half, 2, tok);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(whole[i].tokens, one_by_one[i].tokens) << "prompt " << i;
    EXPECT_EQ(tail[0].tokens, whole[2].tokens);
    EXPECT_EQ(tail[1].tokens, whole[3].tokens);
    // Without the offset the same prompts draw rows 0 and 1's streams: other tokens.
    const auto unshifted = generate(*model, {prompts[2], prompts[3]}, o, 2, tok);
    EXPECT_TRUE(unshifted[0].tokens != whole[2].tokens || unshifted[1].tokens != whole[3].tokens);
    // The same prompt twice in one batch (a GRPO group) gets two different samples.
    const auto twice = generate(*model, {prompts[1], prompts[1]}, o, 2, tok);
    EXPECT_NE(twice[0].tokens, twice[1].tokens);
}

TEST(Generate, TopPKeepsTheSmallestSetWithThatMass) {
    // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps {0, 1}; top_k 3 drops id 3.
    at::Tensor logits = at::log(at::tensor({0.5, 0.3, 0.15, 0.05}, at::kFloat)).unsqueeze(0).repeat({400, 1});
    SamplingOptions o;
    std::vector<at::Generator> gen;
    for (int64_t b = 0; b < 400; ++b) gen.push_back(row_generator(o, b));
    o.temperature = 1.0;
    o.top_p = 0.7;
    at::Tensor ids = pick_next_tokens(logits, o, gen);
    EXPECT_EQ(ids.le(1).all().item<bool>(), true);
    EXPECT_GT(ids.eq(1).sum().item<int64_t>(), 50);
    o.top_p = 1.0;
    o.top_k = 3;
    ids = pick_next_tokens(logits, o, gen);
    EXPECT_EQ(ids.le(2).all().item<bool>(), true);
    EXPECT_GT(ids.eq(2).sum().item<int64_t>(), 20);
    o.top_k = 0;
    o.vocab_limit = 2;  // ids past the tokenizer are never sampled
    EXPECT_EQ(pick_next_tokens(logits, o, gen).le(1).all().item<bool>(), true);
}

TEST(Generate, StopTokensAndStringsEndACompletion) {
    auto model = tiny_model(13);
    const TextCodec& tok = *TextCodec::bytes();
    SamplingOptions o;
    o.max_new_tokens = 12;
    o.stop_ids = std::vector<int64_t>{};
    o.vocab_limit = 256;  // bytes only, so the text has one character per token
    const auto free_run = generate(*model, prompts_of({"abc"}), o, 1, tok)[0];
    ASSERT_EQ(free_run.tokens.size(), 12u);
    ASSERT_EQ(free_run.text.size(), 12u);
    // A stop string made of generated characters 5-6: the text ends before its first
    // occurrence and the ids end with the token that completed it.
    o.stop_strings = {free_run.text.substr(4, 2)};
    auto s = generate(*model, prompts_of({"abc"}), o, 1, tok)[0];
    const size_t at = free_run.text.find(o.stop_strings[0]);
    EXPECT_EQ(s.text, free_run.text.substr(0, at));
    EXPECT_EQ(s.tokens.size(), at + 2);
    EXPECT_EQ(s.finish_reason, "stop");
    // A stop id: generation ends at its first occurrence, which stays in the ids.
    o.stop_strings = {};
    o.stop_ids = std::vector<int64_t>{free_run.tokens[2]};
    auto g = generate(*model, prompts_of({"abc"}), o, 1, tok)[0];
    const size_t first = static_cast<size_t>(std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[2]) -
                                             free_run.tokens.begin());
    EXPECT_EQ(g.tokens.size(), first + 1);  // the stop token is kept in the ids
    EXPECT_EQ(g.finish_reason, "stop");
}

}  // namespace
}  // namespace fthost::test
