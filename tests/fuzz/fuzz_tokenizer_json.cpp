// fuzz_tokenizer_json — tokenizer.json files (tokenizer/*: BPE and Unigram models, added
// tokens, normalizers including the precompiled charsmap, pre-tokenizer regexes, the
// post-processor), loaded with load_tokenizer as a checkpoint's tokenizer is, then used:
// a text encoded (with and without special tokens, and with offsets) and ids decoded.
//
// Input: the tokenizer.json bytes, then optionally "\0" and a text to encode, then
// optionally "\0" and a tokenizer_config.json — when that part is present the directory
// goes through TextCodec::for_model as a stage's tokenizer does (special tokens, chat
// template) and a conversation of the text is encoded with its chat template.
// Invariants: encode_with_offsets gives one offset per id, each inside the text; decode
// takes any id below vocab_size().
#include "fuzz_support.hpp"

#include "tokenizer/text_codec.hpp"
#include "tokenizer/tokenizer.hpp"

using namespace fthost;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    const size_t a = in.find('\0');
    const size_t b = a == std::string::npos ? std::string::npos : in.find('\0', a + 1);
    const std::string json = in.substr(0, a);
    const std::string text = a == std::string::npos ? "" : in.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    const fuzz::fs::path dir = fuzz::scratch() / "tok";
    fuzz::fs::create_directories(dir);
    fuzz::write_file(dir / "tokenizer.json", json);
    std::error_code ec;
    fuzz::fs::remove(dir / "tokenizer_config.json", ec);
    if (b != std::string::npos) fuzz::write_file(dir / "tokenizer_config.json", in.substr(b + 1));

    fuzz::expect_only_errors("tokenizer", [&] {
        auto tok = host::load_tokenizer(dir);
        const int64_t vocab = tok->vocab_size();
        FTHOST_FUZZ_CHECK(vocab >= 0);
        for (bool special : {false, true}) {
            const auto ids = tok->encode(text, special);
            for (int64_t id : ids) FTHOST_FUZZ_CHECK(id >= 0);
            (void)tok->decode(ids, true);
            (void)tok->decode(ids, false);
        }
        std::vector<size_t> starts;
        const auto ids = tok->encode_with_offsets(text, starts);
        FTHOST_FUZZ_CHECK(starts.size() == ids.size());
        for (size_t s : starts) FTHOST_FUZZ_CHECK(s <= text.size());
        // Ids as a sampler draws them: anything below the vocabulary size.
        if (vocab > 0) {
            std::vector<int64_t> any;
            for (unsigned char c : text) any.push_back(static_cast<int64_t>(c) * 7919 % vocab);
            (void)tok->decode(any, true);
            (void)tok->decode(any, false);
        }
        for (const char* t : {"<s>", "</s>", "<unk>", "<|im_end|>", "<|endoftext|>"}) (void)tok->token_to_id(t);
    });
    if (b == std::string::npos) return 0;
    fuzz::expect_only_errors("TextCodec::for_model", [&] {
        auto codec = host::TextCodec::for_model(dir, "");
        (void)codec->describe();
        const auto ids = codec->encode(text, true);
        (void)codec->decode(ids);
        try {
            const auto chat = codec->encode_chat({{"user", text}, {"assistant", text}}, false);
            FTHOST_FUZZ_CHECK(chat.assistant.size() == chat.ids.size());
            (void)codec->encode_chat({{"system", text}, {"user", text}}, true);
        } catch (const Error&) {  // no recognisable template, or turns the template refuses
        }
    });
    return 0;
}
