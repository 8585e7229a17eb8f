// fuzz_jsonl — JSONL data files of every row shape through the loader a stage uses
// (data/dataset.* load_datasets -> jsonl_reader.* -> example.* make_example, span
// corruption, KTO's mismatched rows), then batched as training batches them
// (data/batch_stream.* BatchStream).
//
// Input: two bytes of settings, then the file.
//   byte 0: bits 0-1 the data shape (sequences, pairs, feedback, completions), bit 2 the
//           label policy (all / completion), bits 3-4 the reader (byte tokenizer + chatml;
//           Qwen2's tokenizer.json + its chat template; T5's tokenizer as an
//           encoder-decoder's source; the byte tokenizer again), bit 5 skip_malformed,
//           bit 6 packing (sequences on a decoder only, as validation demands), bit 7 span
//           corruption (the T5 reader only)
//   byte 1: bits 0-2 max_seq_len (2, 3, 4, 8, 16, 32, 64, 256), bits 3-4 batch size - 1,
//           bit 5 shuffle, bits 6-7 eval_fraction (0, 0.1, 0.5, 0.9)
// fthost::Error (a malformed row at file:line, no training examples, a span-corruption
// setup the tokenizer cannot serve) is the documented refusal.
// Invariants: every example (and partner) has one label and one completion flag per id,
// at most max_seq_len ids (but for prompts to sample from), no label at position 0; batches are [B, T] with T <= max_seq_len.
#include "fuzz_support.hpp"

#include "data/batch_stream.hpp"
#include "data/dataset.hpp"

using namespace fthost;
using host::Example;

namespace {

struct Readers {
    std::shared_ptr<const host::TextCodec> bytes, qwen, t5;
    host::InputReader r[4];
};

const Readers& readers() {
    static const Readers rs = [] {
        Readers x;
        const fuzz::fs::path src = FTHOST_SOURCE_DIR;
        x.bytes = host::TextCodec::bytes();
        x.qwen = host::TextCodec::for_model(src / "tests/fixtures/hf/qwen2_chat", "");
        x.t5 = host::TextCodec::for_model(src / "tests/fixtures/tokenizers/t5", "");
        x.r[0] = host::InputReader{x.bytes.get(), {}};
        x.r[1] = host::InputReader{x.qwen.get(), {}};
        x.r[2] = host::InputReader{x.t5.get(), {}, x.t5->pad_id()};  // T5's decoder starts with <pad>
        x.r[3] = host::InputReader{x.bytes.get(), {}};
        return x;
    }();
    return rs;
}

// max_seq_len = 0: no bound (prompts to sample from are not truncated).
void check_example(const Example& ex, int64_t max_seq_len) {
    FTHOST_FUZZ_CHECK(ex.labels.size() == ex.ids.size());
    FTHOST_FUZZ_CHECK(ex.completion_mask.size() == ex.ids.size());
    if (max_seq_len > 0) FTHOST_FUZZ_CHECK(static_cast<int64_t>(ex.ids.size()) <= max_seq_len);
    if (!ex.labels.empty()) FTHOST_FUZZ_CHECK(ex.labels[0] == -100);
    FTHOST_FUZZ_CHECK(ex.partner.size() <= 1);
    for (const auto& p : ex.partner) check_example(p, max_seq_len);
}

}  // namespace

// Loads what the target uses before fuzzing starts, so that libFuzzer counts the
// coverage of the plugin libraries it opens.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)readers();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    static const int64_t kLens[] = {2, 3, 4, 8, 16, 32, 64, 256};
    static const double kFractions[] = {0.0, 0.1, 0.5, 0.9};
    const uint8_t a = data[0], b = data[1];
    const ft_data_shape shape = a & 3;
    const ft_label_policy policy = (a & 4) ? FT_LABELS_COMPLETION : FT_LABELS_ALL;
    const int reader = (a >> 3) & 3;
    host::DataConfig cfg;
    cfg.skip_malformed = a & 32;
    cfg.packing = (a & 64) && shape == FT_DATA_SEQUENCES && reader != 2;
    cfg.span_corruption = (a & 128) && reader == 2;
    cfg.max_seq_len = kLens[b & 7];
    const int64_t batch_size = 1 + ((b >> 3) & 3);
    cfg.shuffle = b & 32;
    cfg.eval_fraction = kFractions[b >> 6];
    cfg.span_corruption_where = "<fuzz>:1:1";
    cfg.train_file = fuzz::scratch_file("train.jsonl", std::string(reinterpret_cast<const char*>(data + 2), size - 2));

    fuzz::expect_only_errors("load_datasets", [&] {
        const uint64_t seed = 1234;
        // Prompts to sample from (FT_DATA_COMPLETIONS) keep their whole length: rollouts
        // append completions to them, and nothing in the data layer truncates them.
        const int64_t bound = shape == FT_DATA_COMPLETIONS ? 0 : cfg.max_seq_len;
        host::Datasets d = host::load_datasets(cfg, readers().r[reader], policy, seed, shape, batch_size);
        for (const auto* set : {&d.train, &d.eval})
            for (const auto& ex : *set) check_example(ex, bound);
        host::BatchStream stream(d.train, batch_size, cfg.max_seq_len, cfg.packing, cfg.shuffle, seed, shape);
        const int64_t n = std::min<int64_t>(stream.batches_per_epoch() + 1, 4);  // into the second epoch
        for (int64_t i = 0; i < n; ++i) {
            host::HostBatch batch = stream.next();
            FTHOST_FUZZ_CHECK(batch.input_ids.dim() == 2);
            FTHOST_FUZZ_CHECK(batch.labels.sizes() == batch.input_ids.sizes());
            FTHOST_FUZZ_CHECK(batch.position_ids.sizes() == batch.input_ids.sizes());
            if (bound > 0) FTHOST_FUZZ_CHECK(batch.input_ids.size(1) <= bound);
            (void)host::as_ft_batch(batch, batch.num_labels);
        }
    });
    return 0;
}
