#pragma once

namespace fthost::test {
const char* source_dir();         // the repository root
const char* plugin_dir();         // the build's plugin folder
const char* broken_plugin_dir();  // deliberately broken plugins (tests/plugins/)
const char* toy_plugin_dir();     // test-only model and objective plugins (tests/plugins/toys)
const char* torch_major_minor();  // the LibTorch major.minor the host was built with
const char* cli_path();           // the build's fthost executable
const char* torchrun_path();      // torchrun of the Python environment LibTorch came from ("" = none)
}  // namespace fthost::test
