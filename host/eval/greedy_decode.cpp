#include "eval/greedy_decode.hpp"

#include "data/byte_tokenizer.hpp"

#include <algorithm>

namespace fthost::host {

std::vector<std::vector<int64_t>> greedy_decode(ModelSession& model, const std::vector<std::vector<int64_t>>& prompts,
                                                int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
                                                int64_t vocab_limit, int64_t batch_size) {
    at::NoGradGuard ng;
    model.set_training(false);
    std::vector<std::vector<int64_t>> out(prompts.size());
    for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(batch_size)) {
        const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
        const int64_t B = static_cast<int64_t>(end - start);
        std::vector<std::vector<int64_t>> seqs(prompts.begin() + start, prompts.begin() + end);
        std::vector<bool> done(B, false);
        for (int64_t step = 0; step < max_new_tokens; ++step) {
            size_t T = 0;
            for (const auto& s : seqs) T = std::max(T, s.size());
            HostBatch b;
            b.input_ids = at::full({B, static_cast<int64_t>(T)}, ByteTokenizer::kPad, at::kLong);
            b.labels = at::full({B, static_cast<int64_t>(T)}, -100, at::kLong);
            b.position_ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
            b.sequence_ids = at::full({B, static_cast<int64_t>(T)}, -1, at::kLong);
            auto ids = b.input_ids.accessor<int64_t, 2>();
            auto pos = b.position_ids.accessor<int64_t, 2>();
            auto seq = b.sequence_ids.accessor<int64_t, 2>();
            for (int64_t r = 0; r < B; ++r) {
                const size_t off = T - seqs[r].size();
                for (size_t i = 0; i < seqs[r].size(); ++i) {
                    ids[r][off + i] = seqs[r][i];
                    pos[r][off + i] = static_cast<int64_t>(i);
                    seq[r][off + i] = 0;
                }
            }
            const at::Device dev = model.device();
            b.input_ids = b.input_ids.to(dev);
            b.labels = b.labels.to(dev);
            b.position_ids = b.position_ids.to(dev);
            b.sequence_ids = b.sequence_ids.to(dev);
            at::Tensor hidden = model.hidden_states(b);
            at::Tensor last = model.logits(hidden.select(1, static_cast<int64_t>(T) - 1)).to(at::kFloat);
            at::Tensor next = last.narrow(-1, 0, vocab_limit).argmax(-1).to(at::kCPU);
            auto nx = next.accessor<int64_t, 1>();
            bool all_done = true;
            for (int64_t r = 0; r < B; ++r) {
                if (done[r]) continue;
                const int64_t tok = nx[r];
                if (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end()) {
                    done[r] = true;
                    continue;
                }
                seqs[r].push_back(tok);
                out[start + r].push_back(tok);
                all_done = false;
            }
            if (all_done) break;
        }
    }
    return out;
}

}  // namespace fthost::host
