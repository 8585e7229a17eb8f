// Plugin loading: every refusal has one line naming the file and the reason, and the
// host goes on loading the rest.
#include "test_support.hpp"

namespace fthost::test {
namespace {

TEST(Registry, LoadsTheBuiltInPlugins) {
    for (auto [kind, name] : std::vector<std::pair<ft_kind, std::string>>{{FT_KIND_MODEL, "decoder"},
                                                                          {FT_KIND_PARAM, "full"},
                                                                          {FT_KIND_PARAM, "lora"},
                                                                          {FT_KIND_OBJECTIVE, "cpt"},
                                                                          {FT_KIND_OBJECTIVE, "sft"},
                                                                          {FT_KIND_GRADER, "exact_match"}})
        EXPECT_NE(registry().find(kind, name), nullptr) << name;
    EXPECT_TRUE(registry().refusals().empty());
    // One library may carry several plugins.
    EXPECT_EQ(registry().find(FT_KIND_OBJECTIVE, "cpt")->file, registry().find(FT_KIND_OBJECTIVE, "sft")->file);
    EXPECT_EQ(registry().find(FT_KIND_GRADER, "exact_match")->desc->torch_version, nullptr);
}

TEST(Registry, RefusesBrokenPluginsOneLineEachAndGoesOn) {
    PluginRegistry reg;
    reg.print_refusals = false;
    reg.load_directory(plugin_dir());
    reg.load_directory(broken_plugin_dir());
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"libbroken_abi_major.so", "ABI major 2 differs from the host's 1"},
        {"libbroken_duplicate.so", "duplicate grader 'exact_match' (already loaded from"},
        {"libbroken_model_fields_without_encode.so", "model 'broken_model_fields_without_encode': declares FT_INPUT_FIELDS without encode_row"},
        {"libbroken_model_head_without_vocab.so", "model 'broken_model_head_without_vocab': has one of lm_head and vocab_size without the other"},
        {"libbroken_no_entry.so", "no entry symbol 'fthost_plugins_v1'"},
        {"libbroken_struct_size.so", "descriptor struct too small"},
        {"libbroken_torch_version.so", std::string("built with LibTorch 1.0, the host uses ") + torch_major_minor()},
        {"libbroken_vtable_size.so", "function table struct too small"},
        {"libnot_a_library.so", "not a loadable shared library"},
    };
    ASSERT_EQ(reg.refusals().size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        const std::string& line = reg.refusals()[i];
        EXPECT_NE(line.find(expected[i].first), std::string::npos) << line;
        EXPECT_NE(line.find(expected[i].second), std::string::npos) << line;
        EXPECT_EQ(line.find('\n'), std::string::npos);
    }
    // The good plugin in the same folder still loaded, and the real exact_match kept.
    EXPECT_NE(reg.find(FT_KIND_GRADER, "good_grader"), nullptr);
    EXPECT_NE(reg.find(FT_KIND_GRADER, "exact_match")->file.find("libfthost_exact_match.so"), std::string::npos);
}

// The loader's own reason, not Boost.DLL's "Bad file descriptor" for every failure.
TEST(Registry, RefusalSaysWhyTheLoaderRefused) {
    PluginRegistry reg;
    reg.print_refusals = false;
    reg.load_file(fs::path(broken_plugin_dir()) / "libnot_a_library.so");
    ASSERT_EQ(reg.refusals().size(), 1u);
    const std::string& line = reg.refusals()[0];
    EXPECT_EQ(line.find("Bad file descriptor"), std::string::npos) << line;
    EXPECT_TRUE(line.find("file too short") != std::string::npos || line.find("invalid ELF header") != std::string::npos)
        << line;
    const fs::path dir = temp_dir("registry_missing_dep");
    reg.load_file(dir / "libabsent.so");
    ASSERT_EQ(reg.refusals().size(), 2u);
    EXPECT_NE(reg.refusals()[1].find("No such file or directory"), std::string::npos) << reg.refusals()[1];
}

TEST(Registry, MissingPluginFolderIsWarnedOnceByName) {
    PluginRegistry reg;
    reg.print_refusals = false;
    reg.load_directory("/nonexistent/fthost-plugins");
    reg.load_directory("/nonexistent/fthost-plugins");
    ASSERT_EQ(reg.warnings().size(), 1u);
    EXPECT_NE(reg.warnings()[0].find("plugin folder /nonexistent/fthost-plugins does not exist"), std::string::npos)
        << reg.warnings()[0];
    EXPECT_TRUE(reg.refusals().empty());
    // The build's own folder loads without a warning.
    PluginRegistry ok;
    ok.print_refusals = false;
    ok.load_directory(plugin_dir());
    EXPECT_TRUE(ok.warnings().empty());
}

TEST(Registry, RequireNamesWhatExists) {
    try {
        registry().require(FT_KIND_MODEL, "whisper");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no model plugin named 'whisper' (loaded: decoder"), std::string::npos) << e.what();
    }
}

TEST(Registry, SearchPathIncludesFthostPluginPath) {
    ::setenv("FTHOST_PLUGIN_PATH", "/a:/b::/c", 1);
    auto dirs = PluginRegistry::default_search_path();
    ::unsetenv("FTHOST_PLUGIN_PATH");
    ASSERT_EQ(dirs.size(), 4u);
    EXPECT_EQ(dirs[0], plugin_dir());
    EXPECT_EQ(dirs[3], "/c");
}

TEST(Grader, ExactMatchNormalisesWhitespaceAndCase) {
    const auto& g = registry().require(FT_KIND_GRADER, "exact_match");
    auto ps = plugin(FT_KIND_GRADER, "exact_match");
    const auto* vt = static_cast<const ft_grader_vtable*>(g.desc->vtable);
    ft_grader* h = nullptr;
    ft_error err{};
    ASSERT_EQ(vt->create(fthost::host::host_api(), &ps.config, &h, &err), FT_OK);
    ft_grade_item items[] = {{sizeof(ft_grade_item), "p", "  Dairy \n", " dairy", "{}"},
                             {sizeof(ft_grade_item), "p", "dairy products", "dairy", "{}"},
                             {sizeof(ft_grade_item), "p", "frozen   food", "Frozen food", "{}"},
                             {sizeof(ft_grade_item), "p", "x", nullptr, "{}"}};
    ft_grade_result res[4];
    ASSERT_EQ(vt->grade(h, items, 4, res, &err), FT_OK);
    vt->destroy(h);
    EXPECT_EQ(res[0].score, 1.0);
    EXPECT_EQ(res[1].score, 0.0);
    EXPECT_EQ(res[2].score, 1.0);
    EXPECT_TRUE(std::isnan(res[3].score));
}

}  // namespace
}  // namespace fthost::test
