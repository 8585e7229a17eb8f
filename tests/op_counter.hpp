// op_counter.hpp — counts the calls of one ATen operator while alive (every thread,
// backward included) and how many of them returned a bfloat16 tensor: what a test
// asserts to prove a feature ran — layers recomputed under activation checkpointing,
// forward passes autocast to bf16 — where an equality alone would hold with it off.
#pragma once

#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace fthost::test {

class OpCounter {
public:
    explicit OpCounter(std::string op) : op_(std::move(op)) {
        {
            std::lock_guard<std::mutex> lock(mutex());
            live().push_back(this);
        }
        handle_ = at::addGlobalCallback(
            at::RecordFunctionCallback(&on_start, &on_end).needsOutputs(true).scopes({at::RecordScope::FUNCTION}));
    }
    ~OpCounter() {
        at::removeCallback(handle_);
        std::lock_guard<std::mutex> lock(mutex());
        live().erase(std::find(live().begin(), live().end(), this));
    }
    OpCounter(const OpCounter&) = delete;
    OpCounter& operator=(const OpCounter&) = delete;

    int64_t calls() const { return calls_; }
    int64_t bf16_calls() const { return bf16_; }
    void reset() { calls_ = 0, bf16_ = 0; }

private:
    // The callback is a plain function: it finds the live counters here.
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    static std::vector<OpCounter*>& live() {
        static std::vector<OpCounter*> v;
        return v;
    }
    static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) { return nullptr; }
    static void on_end(const at::RecordFunction& f, at::ObserverContext*) {
        std::lock_guard<std::mutex> lock(mutex());
        for (OpCounter* c : live()) {
            if (c->op_ != f.name()) continue;
            ++c->calls_;
            for (const auto& v : f.outputs())
                if (v.isTensor() && v.toTensor().defined() && v.toTensor().scalar_type() == at::kBFloat16) {
                    ++c->bf16_;
                    break;
                }
        }
    }
    std::string op_;
    std::atomic<int64_t> calls_{0}, bf16_{0};
    at::CallbackHandle handle_;
};

}  // namespace fthost::test
