// Build-specific paths for the tests, compiled into this one file only (ccache-friendly).
#include "test_paths.hpp"

namespace fthost::test {
const char* source_dir() { return FTHOST_SOURCE_DIR; }
const char* plugin_dir() { return FTHOST_BUILD_PLUGIN_DIR; }
const char* broken_plugin_dir() { return FTHOST_BROKEN_PLUGIN_DIR; }
const char* toy_plugin_dir() { return FTHOST_TOY_PLUGIN_DIR; }
const char* torch_major_minor() { return FTHOST_TORCH_MAJOR_MINOR; }
const char* cli_path() { return FTHOST_CLI; }
const char* torchrun_path() { return FTHOST_TORCHRUN; }
}  // namespace fthost::test
