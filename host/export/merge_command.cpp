#include "export/merge_command.hpp"

#include "io/atomic_file.hpp"
#include "tokenizer/text_codec.hpp"
#include "model/model_session.hpp"

#include <fthost/plugin.hpp>

#include <iostream>

namespace fs = std::filesystem;

namespace fthost::host {

int merge_command(const MergeRequest& req, const PluginRegistry& registry) {
    const fs::path src(req.stage_dir), out(req.out);
    if (!fs::exists(src / "stage.json"))
        throw Error(src.string() + " is not a stage directory (no stage.json); give a stage's final/ directory, "
                    "e.g. runs/NAME/stages/STAGE/final", FT_ERR_CONFIG);
    if (out.empty()) throw Error("--out DIR is required: where to write the merged model", FT_ERR_CONFIG);
    if (fs::weakly_canonical(out) == fs::weakly_canonical(src))
        throw Error("--out must differ from the stage directory it merges", FT_ERR_CONFIG);
    if (req.dtype != "base" && req.dtype != "fp32")
        throw Error("--dtype must be base or fp32 (got \"" + req.dtype + "\")", FT_ERR_CONFIG);
    const bool fp32 = req.dtype == "fp32";
    const at::Device device(req.device == "auto" ? (at::hasCUDA() ? "cuda" : "cpu") : req.device);
    // from_stage_dir merges every adapter of the chain (an adapter over an adapter stage too).
    auto model = ModelSession::from_stage_dir(src, registry, device, /*merge_adapter=*/true);
    const auto codec = TextCodec::for_model(src, "");
    write_directory_atomically(out, [&](const fs::path& tmp) {
        model->save_model(tmp, kDefaultMaxShardBytes, fp32 ? std::optional(at::kFloat) : std::nullopt);
        codec->save(tmp);  // a checkpoint's tokenizer files: the merged directory is servable as it is
    });
    std::cout << "fthost merge: wrote " << out.string() << " (" << model->model_parameters().size()
              << " tensors, adapter merged, " << (fp32 ? "float32" : "in the base's dtypes")
              << (codec->is_bytes() ? "" : ", with the checkpoint's tokenizer") << ")\n";
    return 0;
}

}  // namespace fthost::host
