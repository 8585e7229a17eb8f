// The host's folders form layers (docs/ARCHITECTURE.md, "Folders"): a file includes
// headers of its own folder or of a lower layer, never of a higher one or of another
// folder on its own layer — so there is no include cycle between folders. Read from the
// sources themselves, so a new include that breaks the order fails here.
#include "test_support.hpp"

#include <regex>

namespace fthost::test {
namespace {

const std::map<std::string, int> kLayer = {
    {"io", 0},       {"tokenizer", 1}, {"registry", 1}, {"config", 2}, {"data", 3},  {"checkpoint", 3},
    {"distributed", 3},
    {"model", 4},    {"generate", 5},  {"eval", 6},     {"train", 7},  {"export", 8}, {"run", 8},
    {"cli", 9},
};

TEST(Layering, HostFoldersIncludeOnlyLowerLayers) {
    const fs::path host = fs::path(source_dir()) / "host";
    const std::regex include("^#include \"([a-z_]+)/[^\"]+\"");
    int checked = 0;
    for (const auto& entry : fs::recursive_directory_iterator(host)) {
        const fs::path& p = entry.path();
        if (p.extension() != ".cpp" && p.extension() != ".hpp") continue;
        const std::string folder = fs::relative(p, host).begin()->string();
        ASSERT_TRUE(kLayer.count(folder)) << "host/" << folder << " has no layer: add it here and to docs/ARCHITECTURE.md";
        std::ifstream in(p);
        for (std::string line; std::getline(in, line);) {
            std::smatch m;
            if (!std::regex_search(line, m, include)) continue;
            const std::string target = m[1];
            ++checked;
            if (target == folder) continue;
            ASSERT_TRUE(kLayer.count(target)) << p << " includes " << line;
            EXPECT_LT(kLayer.at(target), kLayer.at(folder)) << fs::relative(p, host) << " (" << folder << ", layer "
                                                             << kLayer.at(folder) << ") includes " << line;
        }
    }
    EXPECT_GT(checked, 100);  // the walk found the sources
}

}  // namespace
}  // namespace fthost::test
