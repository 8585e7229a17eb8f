// Every preference and distillation objective against TRL 0.28: the plugins are
// loaded through the C ABI and fed the per-token log-probs (or logits) that
// tests/fixtures/make_objective_fixtures.py wrote next to TRL's loss and metrics.
// Values must agree in float64 to a relative 1e-6, and each loss's gradient with
// respect to its policy inputs must match central finite differences.
#include "test_support.hpp"

#include <fthost/torch.hpp>

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

const json& fixtures() {
    static const json j = [] {
        std::ifstream in(fs::path(source_dir()) / "tests/fixtures/objectives_trl.json");
        return json::parse(in);
    }();
    return j;
}

at::Tensor tensor_of(const json& rows, at::ScalarType type = at::kDouble) {
    std::vector<double> flat;
    int64_t n = 0, m = 0;
    for (const auto& r : rows) {
        ++n;
        m = static_cast<int64_t>(r.size());
        for (const auto& v : r) flat.push_back(v.get<double>());
    }
    return at::tensor(flat, at::kDouble).view({n, m}).to(type);
}

std::string toml_of(const json& config) {
    std::string body;
    for (const auto& [k, v] : config.items()) body += k + " = " + v.dump() + "\n";
    return body;
}

// One objective plugin driven by a case's fixed inputs instead of a model.
struct Harness {
    const json& c;
    PluginSection section;
    const ft_objective_vtable* vt;
    ft_objective* obj = nullptr;
    HostBatch batch;
    at::Tensor policy, reference, student, teacher;  // policy / student require grad
    std::map<std::string, double> metrics;
    ft_run_s run;

    explicit Harness(const json& cs) : c(cs) {
        section = plugin(FT_KIND_OBJECTIVE, c["objective"].get<std::string>(), toml_of(c["config"]));
        vt = static_cast<const ft_objective_vtable*>(section.loaded->desc->vtable);
        ft_error err{};
        check(vt->create(host_api(), &section.config, &obj, &err), err);
        const bool distill = c["objective"] == "distill";
        // Labels: fthost's layout (label at t predicted at t-1). GKD's mask is aligned
        // with the logits, so it moves one position right.
        at::Tensor mask;
        if (distill) {
            at::Tensor gkd = tensor_of(c["gkd_mask"], at::kLong);
            mask = at::constant_pad_nd(gkd, {1, 0}, 0);
        } else {
            mask = tensor_of(c["labels_mask"], at::kLong);
        }
        const int64_t R = mask.size(0), T = mask.size(1);
        batch.labels = at::where(mask.ne(0), at::ones_like(mask), at::full_like(mask, -100));
        batch.input_ids = at::ones({R, T}, at::kLong);
        batch.position_ids = at::arange(T).repeat({R, 1});
        batch.sequence_ids = at::zeros({R, T}, at::kLong);
        batch.num_labels = mask.sum().item<int64_t>();
        batch.num_examples = c.contains("desirable") || distill ? R : R / 2;
        if (c.contains("desirable")) {
            batch.num_examples = static_cast<int64_t>(c["desirable"].size());
            batch.desirable = at::tensor(c["desirable"].get<std::vector<int64_t>>(), at::kLong);
        }
        if (c.contains("completion_mask")) batch.completion_mask = tensor_of(c["completion_mask"], at::kLong);
        if (distill) {
            student = tensor_of(c["student_logits"]).requires_grad_(true);
            teacher = tensor_of(c["teacher_logits"]);
        } else {
            policy = tensor_of(c["policy"]).requires_grad_(true);
            if (c.contains("reference")) reference = tensor_of(c["reference"]);
        }
        run.token_logprobs = [this](const ft_batch&, int32_t which, double temperature) -> at::Tensor {
            if (temperature != 1.0) throw Error("these objectives ask for log-probs at temperature 1");
            if (which == FT_RUN_POLICY) return policy;
            if (which == FT_RUN_REFERENCE && reference.defined()) return reference;
            throw Error("this case has no such model");
        };
        run.label_logits = [this](const ft_batch&, int32_t which) -> at::Tensor {
            return which == FT_RUN_TEACHER ? teacher : student;
        };
        run.metric = [this](const std::string& n, double v) { metrics[n] = v; };
    }
    ~Harness() {
        if (obj) vt->destroy(obj);
    }
    at::Tensor loss() {
        ft_batch fb = as_ft_batch(batch, batch.num_labels);
        ft_tensor out = nullptr;
        ft_error err{};
        check(vt->loss(obj, &run, &fb, &out, &err), err);
        return take(out);
    }
    at::Tensor& input() { return policy.defined() ? policy : student; }
};

void expect_rel(double got, double want, const std::string& what) {
    EXPECT_NEAR(got, want, 1e-6 * std::max(1.0, std::abs(want))) << what;
    if (std::abs(want) > 1e-3) EXPECT_LE(std::abs(got - want) / std::abs(want), 1e-6) << what;
}

TEST(ObjectiveParity, FixtureComesFromPinnedTrl) {
    EXPECT_EQ(fixtures()["trl_version"], "0.28.0");
    std::set<std::string> objectives;
    for (const auto& c : fixtures()["cases"]) objectives.insert(c["objective"].get<std::string>());
    EXPECT_EQ(objectives, (std::set<std::string>{"distill", "dpo", "kto", "orpo", "simpo"}));
}

TEST(ObjectiveParity, LossAndMetricsEqualTrl) {
    for (const auto& c : fixtures()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        Harness h(c);
        const at::Tensor loss = h.loss();
        EXPECT_EQ(loss.scalar_type(), at::kDouble);
        expect_rel(loss.item<double>(), c["loss"].get<double>(), "loss");
        for (const auto& [name, want] : c["metrics"].items()) {
            ASSERT_TRUE(h.metrics.count(name)) << "metric " << name << " not reported";
            expect_rel(h.metrics[name], want.get<double>(), name);
        }
    }
}

// Near-tie pairs (LO ~ 0): TRL computes ORPO's odds ratio and rewards in float32, so its
// log_odds_chosen and rewards/margins carry float32 rounding that is large relative to
// their size (and at a 1e-7 gap every pair ties). The plugin's metrics must be those
// float32 values — relative 1e-6 at any magnitude, exact zeros included — while its
// loss stays in the inputs' float64 and differs from TRL's by float32 rounding of the
// odds-ratio term only.
TEST(ObjectiveParity, OrpoNearTiesEqualTrlInFloat32) {
    int near_ties = 0;
    for (const auto& c : fixtures()["cases"]) {
        const std::string name = c["name"].get<std::string>();
        if (name.rfind("orpo_near_tie", 0) != 0) continue;
        SCOPED_TRACE(name);
        ++near_ties;
        Harness h(c);
        const double loss = h.loss().item<double>(), want_loss = c["loss"].get<double>();
        std::cout << name << ": loss rel " << std::abs(loss - want_loss) / std::abs(want_loss);
        EXPECT_LE(std::abs(loss - want_loss), 1e-7 * std::abs(want_loss)) << "loss";
        for (const auto& [metric, v] : c["metrics"].items()) {
            const double want = v.get<double>(), got = h.metrics.at(metric);
            std::cout << ", " << metric << " " << (want == 0 ? std::abs(got) : std::abs(got - want) / std::abs(want));
            EXPECT_LE(std::abs(got - want), 1e-6 * std::abs(want) + 1e-15)
                << metric << ": got " << got << ", TRL " << want;
        }
        std::cout << "\n";
    }
    EXPECT_EQ(near_ties, 3);
}

TEST(ObjectiveParity, GradientsMatchFiniteDifferences) {
    for (const auto& c : fixtures()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        Harness h(c);
        h.loss().backward();
        at::Tensor& x = h.input();
        ASSERT_TRUE(x.grad().defined());
        // Every labelled input (at most 40 of them); elsewhere the gradient must be 0.
        std::vector<int64_t> idx;
        const at::Tensor flat_grad = x.grad().view(-1);
        if (h.policy.defined()) {
            const at::Tensor m = h.batch.labels.ne(-100).view(-1);
            for (int64_t i = 0; i < m.size(0) && idx.size() < 40; ++i)
                if (m[i].item<bool>()) idx.push_back(i);
            EXPECT_EQ(flat_grad.masked_select(m.logical_not()).abs().max().item<double>(), 0.0);
        } else {
            for (int64_t i = 0; i < std::min<int64_t>(40, flat_grad.size(0)); ++i) idx.push_back(i * 3 % flat_grad.size(0));
        }
        EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
        expect_grad_matches_finite_differences(x, [&] { return h.loss(); }, idx, 1e-8, 1e-5, c["name"]);
    }
}

// The effective-batch denominator: two micro-batches of a pair objective sum to the
// mean over all their pairs, the same as one batch holding every pair.
TEST(ObjectiveParity, AccumulatedMicroBatchesEqualOneBatch) {
    const json& c = fixtures()["cases"][0];  // dpo sigmoid, 4 pairs
    ASSERT_EQ(c["objective"], "dpo");
    Harness whole(c);
    const double one = whole.loss().item<double>();
    // Split into pairs {0,1} and {2,3}: rows (0,1,4,5) and (2,3,6,7).
    double sum = 0;
    for (const std::vector<int64_t>& rows : {std::vector<int64_t>{0, 1, 4, 5}, std::vector<int64_t>{2, 3, 6, 7}}) {
        Harness part(c);
        const at::Tensor idx = at::tensor(rows, at::kLong);
        part.policy = whole.policy.detach().index_select(0, idx);
        part.reference = whole.reference.index_select(0, idx);
        part.batch.labels = whole.batch.labels.index_select(0, idx);
        part.batch.input_ids = whole.batch.input_ids.index_select(0, idx);
        part.batch.position_ids = whole.batch.position_ids.index_select(0, idx);
        part.batch.sequence_ids = whole.batch.sequence_ids.index_select(0, idx);
        part.batch.num_examples = 2;
        ft_batch fb = as_ft_batch(part.batch, whole.batch.num_labels, /*num_examples_in_batch=*/4);
        ft_tensor out = nullptr;
        ft_error err{};
        check(part.vt->loss(part.obj, &part.run, &fb, &out, &err), err);
        sum += take(out).item<double>();
    }
    EXPECT_NEAR(sum, one, 1e-12);
}

TEST(ObjectiveParity, ValidationRejectsBadValues) {
    auto errors_for = [](const std::string& name, const std::string& body) {
        const LoadedPlugin& p = registry().require(FT_KIND_OBJECTIVE, name);
        auto table = toml::parse(body);
        Diagnostics diag;
        Section s = validate_section(&table, "<test>", name, p.desc->options, p.desc->option_count, diag);
        ft_error err{};
        const ft_status st = p.desc->validate ? p.desc->validate(host_api(), &s, &err) : FT_OK;
        return st == FT_OK ? std::string() : std::string(err.message);
    };
    EXPECT_NE(errors_for("dpo", "loss_type = \"sigmod\"").find("sigmoid, robust, hinge, ipo"), std::string::npos);
    EXPECT_NE(errors_for("dpo", "loss_type = \"hinge\"\nlabel_smoothing = 0.1").find("sigmoid and robust only"),
              std::string::npos);
    EXPECT_NE(errors_for("dpo", "label_smoothing = 0.5").find("[0, 0.5)"), std::string::npos);
    EXPECT_NE(errors_for("kto", "desirable_weight = 0.0").find("must be > 0"), std::string::npos);
    EXPECT_NE(errors_for("distill", "beta = 1.5").find("[0, 1]"), std::string::npos);
    EXPECT_NE(errors_for("simpo", "beta = 0.0").find("must be > 0"), std::string::npos);
    EXPECT_EQ(errors_for("orpo", "beta = 0.2"), "");
}

}  // namespace
}  // namespace fthost::test
