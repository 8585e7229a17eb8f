#include "train/optimizer_shards.hpp"

#include <algorithm>
#include <numeric>

namespace fthost::host {

std::vector<int> assign_owners(const TensorList& params, int ranks) {
    std::vector<size_t> order(params.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return params[a].second.numel() > params[b].second.numel(); });
    std::vector<int64_t> load(static_cast<size_t>(ranks), 0);
    std::vector<int> owner(params.size(), 0);
    for (size_t i : order) {
        const auto least = std::min_element(load.begin(), load.end());
        owner[i] = static_cast<int>(least - load.begin());
        *least += params[i].second.numel();
    }
    return owner;
}

void share_updated_parameters(Communicator& comm, const TensorList& params, const std::vector<int>& owners) {
    for (int r = 0; r < comm.size(); ++r) {
        std::vector<at::Tensor> of_r;
        for (size_t i = 0; i < params.size(); ++i)
            if (owners[i] == r) of_r.push_back(params[i].second);
        comm.broadcast(of_r, r, "broadcast of the updated parameters");
    }
}

TensorList gather_optimizer_state(Communicator& comm, const AdamW& optimizer, const TensorList& params,
                                  const std::vector<int>& owners) {
    const TensorList mine = optimizer.state();  // the owned parameters', in parameter order
    if (!comm.leader()) {
        std::vector<at::Tensor> tensors;
        for (const auto& [name, t] : mine) tensors.push_back(t);
        comm.send(tensors, 0, "gather of the optimizer state");
        return {};
    }
    // Rank 0: its own entries, and buffers for each other owner's, received in that order.
    std::map<std::string, at::Tensor> by_name(mine.begin(), mine.end());
    for (int r = 1; r < comm.size(); ++r) {
        std::vector<at::Tensor> buffers;
        for (size_t i = 0; i < params.size(); ++i) {
            if (owners[i] != r) continue;
            const auto& [name, p] = params[i];
            const auto wide = p.options().dtype(at::promote_types(p.scalar_type(), at::kFloat));
            at::Tensor m = at::zeros(p.sizes(), wide), v = at::zeros(p.sizes(), wide);
            at::Tensor st = at::zeros({}, p.options().dtype(at::kFloat));
            by_name["exp_avg." + name] = m, by_name["exp_avg_sq." + name] = v, by_name["step." + name] = st;
            buffers.insert(buffers.end(), {m, v, st});
            if (needs_master(p)) buffers.push_back(by_name["master." + name] = at::zeros(p.sizes(), wide));
        }
        comm.receive(buffers, r, "gather of the optimizer state");
    }
    TensorList out;
    for (const auto& [name, p] : params) {
        for (const char* key : {"exp_avg.", "exp_avg_sq.", "step."}) out.emplace_back(key + name, by_name.at(key + name));
        if (needs_master(p)) out.emplace_back("master." + name, by_name.at("master." + name));
    }
    return out;
}

}  // namespace fthost::host
