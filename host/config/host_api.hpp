// host_api.hpp — the ft_host_api table the host hands to every plugin, and the run
// context (ft_run) through which objectives ask for log-probs and report metrics.
#pragma once

#include <fthost/fthost.h>

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <string>

// The concrete type behind the opaque ft_run handle.
struct ft_run_s {
    // `model` is FT_RUN_POLICY, FT_RUN_REFERENCE or FT_RUN_TEACHER.
    std::function<at::Tensor(const ft_batch&, int32_t model, double temperature)> token_logprobs;
    std::function<at::Tensor(const ft_batch&, int32_t model)> label_logits;
    std::function<std::map<std::string, at::Tensor>(const ft_batch&, int32_t model)> model_outputs;
    std::function<void(const std::string&, double)> metric;
};

namespace fthost::host {

const ft_host_api* host_api();
void set_host_seed(uint64_t seed);

// While one lives (on this thread), ft_host_api.loading_weights answers 1: the model the
// host creates meanwhile has every parameter replaced from a checkpoint next.
class LoadingWeightsScope {
public:
    LoadingWeightsScope();
    ~LoadingWeightsScope();
    LoadingWeightsScope(const LoadingWeightsScope&) = delete;
    LoadingWeightsScope& operator=(const LoadingWeightsScope&) = delete;

private:
    bool outer_;
};

// While one lives (on this thread), ft_host_api.run_device answers `device` ("cuda:0").
class RunDeviceScope {
public:
    explicit RunDeviceScope(std::string device);
    ~RunDeviceScope();
    RunDeviceScope(const RunDeviceScope&) = delete;
    RunDeviceScope& operator=(const RunDeviceScope&) = delete;

private:
    std::string outer_;
};

}  // namespace fthost::host
