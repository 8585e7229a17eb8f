// cpt and sft — next-token cross-entropy, as transformers' ForCausalLMLoss with
// num_items_in_batch computes it for TRL's SFTTrainer: the summed negative log-likelihood
// of the labelled tokens divided by the number of labelled tokens in the whole effective
// batch (all accumulation micro-batches), i.e. one per-token mean, not a mean of
// per-sequence means. The two objectives are the same loss; they differ only in which
// tokens the host labels: every token (cpt) or the completion / assistant tokens (sft).
#include <fthost/torch.hpp>

namespace {

class CausalLm {
public:
    CausalLm(const fthost::Host&, const fthost::Config&) {}
    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        at::Tensor lp = run.token_logprobs();
        return -lp.sum() / static_cast<double>(batch.num_items_in_batch);
    }
};

}  // namespace

FTHOST_OBJECTIVE(cpt, CausalLm, FT_LABELS_ALL, "cpt", "0.1.0", "continued pre-training: loss on every token", nullptr);
FTHOST_OBJECTIVE(sft, CausalLm, FT_LABELS_COMPLETION, "sft", "0.1.0",
                 "supervised fine-tuning: loss on completion / assistant tokens only", nullptr);
FTHOST_PLUGINS(cpt, sft)
