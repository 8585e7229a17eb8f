// safetensors: round trip, and malformed files rejected with a reason, never read out
// of bounds.
#include "io/safetensors.hpp"
#include "test_support.hpp"

#include "io/atomic_file.hpp"
#include "train/process_memory.hpp"

namespace fthost::test {
namespace {

void write_raw(const fs::path& p, const std::string& header, const std::string& data) {
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
}

std::string load_error(const fs::path& p) {
    try {
        load_safetensors(p.string());
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Safetensors, RoundTripKeepsNamesDtypesShapesAndBytes) {
    auto dir = temp_dir("st");
    TensorList in = {{"b.weight", at::randn({3, 4})},
                     {"a.bias", at::arange(5, at::kLong)},
                     {"c", at::randn({2, 2}).to(at::kBFloat16)},
                     {"scalar", at::tensor(3.5)}};
    save_safetensors((dir / "t.safetensors").string(), in, {{"format", "pt"}});
    std::map<std::string, std::string> meta;
    auto out = load_safetensors((dir / "t.safetensors").string(), &meta);
    ASSERT_EQ(out.size(), in.size());
    for (const auto& [name, t] : in) {
        ASSERT_TRUE(out.count(name)) << name;
        EXPECT_EQ(out[name].scalar_type(), t.scalar_type());
        EXPECT_TRUE(out[name].equal(t)) << name;
    }
    EXPECT_EQ(meta["format"], "pt");
    EXPECT_FALSE(fs::exists(dir / ".tmp-t.safetensors"));
}

TEST(Safetensors, RejectsMalformedFiles) {
    auto dir = temp_dir("st-bad");
    const fs::path p = dir / "bad.safetensors";
    write_file(p, "abc");
    EXPECT_NE(load_error(p).find("shorter than its 8-byte header"), std::string::npos);
    write_raw(p, std::string(10, ' '), "");
    EXPECT_NE(load_error(p).find("header is not JSON"), std::string::npos);
    {
        std::ofstream out(p, std::ios::binary);
        for (int i = 0; i < 8; ++i) out.put(static_cast<char>(0x7f));
    }
    EXPECT_NE(load_error(p).find("exceeds the file"), std::string::npos);
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", std::string(8, '\0'));
    EXPECT_NE(load_error(p).find("outside the file"), std::string::npos);
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, '\0'));
    EXPECT_NE(load_error(p).find("shape does not match"), std::string::npos);
    write_raw(p, R"({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
    EXPECT_NE(load_error(p).find("unsupported dtype 'Q4'"), std::string::npos);
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
              std::string(8, '\0'));
    EXPECT_NE(load_error(p).find("overlap"), std::string::npos);
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
    EXPECT_NE(load_error(p).find("bad shape"), std::string::npos);
    // A shape whose element count overflows must not wrap around into a small byte range.
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}})", "");
    EXPECT_NE(load_error(p).find("too large"), std::string::npos);
}

// Found with tests/fuzz/fuzz_safetensors (corpus/safetensors/regress-*): an element count
// within bounds whose byte count wraps to 0 (2^61 F64, 2^62 F32) matched empty
// data_offsets, and a zero-element shape with huge other dims passed, so the header check
// `fthost validate` runs accepted both while the loader threw LibTorch's c10::Error
// ("Storage size calculation overflowed", "Stride calculation overflowed"). Both are now
// malformed files, refused the same way by both.
TEST(Safetensors, ShapesWhoseBytesOrStridesOverflowAreMalformed) {
    auto dir = temp_dir("st-wrap");
    const fs::path p = dir / "bad.safetensors";
    for (const char* header : {R"({"x": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}})",
                               R"({"x": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})",
                               R"({"x": {"dtype": "F32", "shape": [0, 4611686018427387904, 4611686018427387904], "data_offsets": [0, 0]}})"}) {
        write_raw(p, header, "");
        EXPECT_NE(load_error(p).find("too large to address"), std::string::npos) << header;
        EXPECT_THROW(check_safetensors_header(p.string()), Error) << header;
    }
    // Zero-element tensors with ordinary shapes still load.
    write_raw(p, R"({"x": {"dtype": "F32", "shape": [0, 1024, 1024], "data_offsets": [0, 0]}})", "");
    EXPECT_EQ(load_safetensors(p.string()).at("x").numel(), 0);
}

TEST(Safetensors, LoadedTensorsAreMappedCopyOnWrite) {
    auto dir = temp_dir("st-cow");
    const fs::path p = dir / "t.safetensors";
    host::save_safetensors(p.string(), {{"w", at::arange(6, at::kFloat)}});
    const std::string before = host::read_text(p);
    {
        auto t = host::load_safetensors(p.string());
        t.at("w").mul_(2);  // writes go to private pages
        EXPECT_TRUE(at::equal(t.at("w"), at::arange(6, at::kFloat) * 2));
    }
    EXPECT_EQ(host::read_text(p), before);
    // The tensors outlive the map they came in and keep the file's bytes.
    at::Tensor kept = host::load_safetensors(p.string()).at("w");
    EXPECT_TRUE(at::equal(kept, at::arange(6, at::kFloat)));
}

// Each tensor is its own mapping: dropping one gives its pages back while the file's
// other tensors stay (what lets qlora quantise a checkpoint one weight at a time).
TEST(Safetensors, ATensorsPagesGoWithItsLastReference) {
    auto dir = temp_dir("st-pages");
    const fs::path p = dir / "t.safetensors";
    const int64_t n = 16 << 20;  // 64 MB each in float32
    host::save_safetensors(p.string(), {{"a", at::full({n}, 1.5f)}, {"b", at::full({n}, 2.5f)}, {"c", at::arange(5, at::kFloat)}});
    release_free_memory();
    auto t = host::load_safetensors(p.string());
    EXPECT_EQ(t.at("a").sum().item<double>() + t.at("b").sum().item<double>(), 4.0 * n);  // both read: resident
    const double both = static_cast<double>(current_rss_bytes()) / (1 << 20);
    t.erase("a");
    const double one = static_cast<double>(current_rss_bytes()) / (1 << 20);
    EXPECT_GT(both - one, 56.0) << both << " MB -> " << one << " MB";
    EXPECT_EQ(t.at("b").sum().item<double>(), 2.5 * n);
    EXPECT_TRUE(at::equal(t.at("c"), at::arange(5, at::kFloat)));
}

}  // namespace
}  // namespace fthost::test
