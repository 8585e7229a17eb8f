// safetensors.hpp — reads and writes the safetensors format (8-byte little-endian
// header length, a JSON header of name -> dtype/shape/data_offsets, then the bytes), the
// format Hugging Face, PEFT and vLLM load.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace fthost::host {

using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

// Writes to `path` atomically (a temporary file, then rename). Tensors are copied to
// CPU; names are kept in the given order's sorted form, as safetensors requires unique names.
void save_safetensors(const std::string& path, const TensorList& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor. Rejects a malformed header, unknown dtypes, shapes that do not
// match their byte ranges (or overflow), and ranges outside the file or overlapping each
// other; nothing is read before its range is checked. Each tensor is its own
// copy-on-write mapping of the file's pages (none is copied; one misaligned for its dtype
// is read instead), unmapped with the tensor's last reference: a loader that keeps only
// another form of a weight (NF4) holds the file's pages one tensor at a time.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path,
                                                   std::map<std::string, std::string>* metadata = nullptr);

// Reads only the header and checks it as load_safetensors does (JSON, dtypes, shapes,
// byte ranges inside the file and not overlapping); returns the number of tensors.
// What `fthost validate` does to a checkpoint's weights without reading them.
size_t check_safetensors_header(const std::string& path);

}  // namespace fthost::host
