#include "train/adamw.hpp"

#include <fthost/plugin.hpp>

#include <cmath>

namespace fthost::host {

bool needs_master(const at::Tensor& p) {
    return p.is_floating_point() && at::promote_types(p.scalar_type(), at::kFloat) != p.scalar_type();
}

AdamW::AdamW(TensorList params, AdamWOptions opts, std::vector<bool> owned) : opts_(opts) {
    at::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) {
        const auto& [name, p] = params[i];
        const bool mine = owned.empty() || owned.at(i);
        Slot s{name, p, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), p.dim() > 1, mine};
        if (mine) {
            if (needs_master(p)) s.master = p.detach().to(at::kFloat);
            const at::Tensor& like = s.master.defined() ? s.master : p;
            s.exp_avg = at::zeros_like(like);
            s.exp_avg_sq = at::zeros_like(like);
            s.step = at::zeros({}, p.options().dtype(at::kFloat));
        }
        slots_.push_back(std::move(s));
    }
}

void AdamW::step(double lr) {
    at::NoGradGuard ng;
    for (bool decay : {true, false}) {
        std::vector<at::Tensor> p, g, m, v, st;
        for (auto& s : slots_) {
            if (s.decay != decay || !s.owned || s.master.defined() || !s.param.grad().defined()) continue;
            p.push_back(s.param);
            g.push_back(s.param.grad());
            m.push_back(s.exp_avg);
            v.push_back(s.exp_avg_sq);
            st.push_back(s.step);
        }
        if (p.empty()) continue;
        // The fused kernel reads the step count; like torch.optim, count this step first.
        for (auto& t : st) t.add_(1);
        at::_fused_adamw_(p, g, m, v, {}, st, lr, opts_.beta1, opts_.beta2, decay ? opts_.weight_decay : 0.0, opts_.eps,
                          /*amsgrad=*/false, /*maximize=*/false);
    }
    // Narrow parameters one at a time (a float32 gradient exists for one tensor only).
    for (auto& s : slots_) {
        if (!s.master.defined() || !s.param.grad().defined()) continue;
        s.step.add_(1);
        at::_fused_adamw_({s.master}, {s.param.grad().to(at::kFloat)}, {s.exp_avg}, {s.exp_avg_sq}, {}, {s.step}, lr,
                          opts_.beta1, opts_.beta2, s.decay ? opts_.weight_decay : 0.0, opts_.eps,
                          /*amsgrad=*/false, /*maximize=*/false);
        s.param.copy_(s.master);
    }
}

void AdamW::zero_grad() {
    for (auto& s : slots_)
        if (s.param.grad().defined()) s.param.mutable_grad() = at::Tensor();
}

double AdamW::clip_grad_norm(double max_norm) {
    at::NoGradGuard ng;
    std::vector<at::Tensor> norms;
    for (auto& s : slots_)
        if (s.param.grad().defined()) norms.push_back(s.param.grad().detach().to(at::kFloat).norm(2));
    if (norms.empty()) return 0.0;
    const double total = at::stack(norms).norm(2).item<double>();
    if (max_norm > 0 && total > max_norm) {
        const double scale = max_norm / (total + 1e-6);
        for (auto& s : slots_)
            if (s.param.grad().defined()) s.param.mutable_grad().mul_(scale);
    }
    return total;
}

TensorList AdamW::state() const {
    TensorList out;
    for (const auto& s : slots_) {
        if (!s.owned) continue;
        out.emplace_back("exp_avg." + s.name, s.exp_avg);
        out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
        out.emplace_back("step." + s.name, s.step);
        if (s.master.defined()) out.emplace_back("master." + s.name, s.master);
    }
    return out;
}

void AdamW::load_state(const std::map<std::string, at::Tensor>& state) {
    at::NoGradGuard ng;
    for (auto& s : slots_) {
        if (!s.owned) continue;
        for (auto [key, dst] : {std::pair{"exp_avg.", &s.exp_avg}, {"exp_avg_sq.", &s.exp_avg_sq}, {"step.", &s.step}}) {
            auto it = state.find(key + s.name);
            if (it == state.end()) throw Error(std::string("optimizer state lacks '") + key + s.name + "'");
            dst->copy_(it->second);
        }
        if (!s.master.defined()) continue;
        auto it = state.find("master." + s.name);
        if (it == state.end()) throw Error("optimizer state lacks 'master." + s.name + "'");
        s.master.copy_(it->second);
    }
}

double scheduled_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_ratio) {
    if (warmup_steps > 0 && step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
    return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

}  // namespace fthost::host
