// Where sweep nodes run, counted with the fake NodeRunner (fake_runner.h): the sweep's, a
// variant's and an eval entry's `device:`, how many GPU nodes run at once and on which device;
// and a budgeted GPTQ node's meta.json through the real stage runner.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "formats/formats.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "quantize/gptq_budget.h"
#include "tests/pipeline/fake_runner.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::FakeRunner;
using test::plan_of;
using test::yaml;

// Wraps FakeRunner: counts how many nodes of each device run at once (each holds 20 ms).
class DeviceCountingRunner : public NodeRunner {
 public:
  FakeRunner inner;
  std::map<std::string, int> now, max;  ///< by device
  std::map<std::string, std::string> device_of;
  std::set<int> gpus_held, gpus_seen;  ///< CUDA device indices held now / ever
  bool gpu_shared = false;             ///< two running nodes were given the same device
  bool gpu_missing = false;            ///< a "cuda" node got no device index, or a CPU node one
  void run(const NodeTask& t) override {
    const bool cuda = t.device == "cuda";
    {
      std::lock_guard<std::mutex> g(mu_);
      max[t.device] = std::max(max[t.device], ++now[t.device]);
      device_of[t.node.id] = t.device;
      gpu_missing |= cuda != (t.gpu >= 0);
      if (cuda) {
        gpu_shared |= !gpus_held.insert(t.gpu).second;
        gpus_seen.insert(t.gpu);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
      std::lock_guard<std::mutex> g(mu_);
      --now[t.device];
      if (cuda) gpus_held.erase(t.gpu);
    }
    inner.run(t);
  }

 private:
  std::mutex mu_;
};

SweepRunSummary run_with_gpus(const SweepPlan& plan, const std::string& out, NodeRunner& r,
                              int gpus) {
  SweepRunOptions opt;
  opt.out_dir = out;
  opt.jobs = 4;
  opt.gpus = gpus;
  opt.progress = false;
  return run_sweep(plan, opt, r);
}

std::string with_device(const std::string& device) {
  return "device: " + device + "\n" + yaml();
}

TEST(SweepRunner, OneGpuRunsTheCudaNodesOneAtATime) {
  const SweepPlan plan = plan_of(with_device("cuda"));
  DeviceCountingRunner r;
  const auto s = run_with_gpus(plan, test::make_temp_dir("fake") + "/out", r, 1);
  EXPECT_EQ(s.ran, 12);
  EXPECT_EQ(r.max["cuda"], 1);
  EXPECT_EQ(r.device_of["calib:code"], "cpu");  // calibration never holds a GPU
  int cuda_nodes = 0;
  for (const auto& [id, d] : r.device_of) cuda_nodes += d == "cuda";
  EXPECT_EQ(cuda_nodes, 9);  // gptq's quantize + 8 perplexity evals (rtn runs on the CPU)
  EXPECT_EQ(r.device_of["quantize:rtn-b8-g128"], "cpu");
}

// Every eval task takes the sweep's device; GPTQ and AWQ quantize nodes too unless the variant
// names its own `device:`; RTN never holds a GPU.
TEST(SweepRunner, EvalTasksAwqAndPerVariantDevicesReachTheNodes) {
  std::string y = with_device("cuda");
  y.replace(y.find("  - {method: rtn"), 0,
            "  - {method: awq, calibration: code, device: cpu}\n"
            "  - {method: awq, group_size: 64, calibration: code}\n");
  y.replace(y.find("report:"), 0, "  - {task: kld, dataset: code-heldout, ctx: 64}\n");
  std::map<std::string, std::string> d;
  for (const auto& n : plan_of(y).nodes) d[n.id] = n.device;
  EXPECT_EQ(d.at("quantize:awq-b4-g128-code"), "cpu");
  EXPECT_EQ(d.at("quantize:awq-b4-g64-code"), "cuda");
  EXPECT_EQ(d.at("quantize:gptq-b4-g128-code"), "cuda");
  EXPECT_EQ(d.at("quantize:rtn-b8-g128"), "");
  int kld = 0;
  for (const auto& [id, dev] : d)
    if (id.find("kld") != std::string::npos) kld += dev == "cuda";
  EXPECT_EQ(kld, 6);  // the baseline and five variants
}

// An eval entry's own `device:` overrides the sweep's for that entry's eval nodes only (the
// baseline's and every variant's); the other entry's evals and the quantize nodes keep the
// sweep's; the node keys are the same as without it.
TEST(SweepRunner, PerEvalDeviceReachesThatEntrysEvalNodesOnly) {
  const std::string plain = with_device("cuda");
  std::string y = plain;
  const std::string wiki = "dataset: wikitext2, ctx: 64, max_tokens: 256}";
  y.replace(y.find(wiki), wiki.size(),
            "dataset: wikitext2, ctx: 64, max_tokens: 256, device: cpu}");
  const SweepPlan plan = plan_of(y);
  DeviceCountingRunner r;
  run_with_gpus(plan, test::make_temp_dir("fake") + "/out", r, 1);
  int wiki_cpu = 0, code_cuda = 0;
  for (const auto& [id, dev] : r.device_of) {
    if (id.find(":ppl-wikitext2") != std::string::npos) wiki_cpu += dev == "cpu";
    if (id.find(":ppl-code-heldout") != std::string::npos) code_cuda += dev == "cuda";
  }
  EXPECT_EQ(wiki_cpu, 4);   // the baseline and three variants
  EXPECT_EQ(code_cuda, 4);  // the sweep's device
  EXPECT_EQ(r.device_of.at("quantize:gptq-b4-g128-code"), "cuda");
  EXPECT_EQ(r.device_of.at("eval:fp16:ppl-wikitext2-chunks-ctx64-n256"), "cpu");
  // The other way round: a CPU sweep with one eval on CUDA.
  std::string z = with_device("cpu");
  z.replace(z.find(wiki), wiki.size(),
            "dataset: wikitext2, ctx: 64, max_tokens: 256, device: cuda}");
  std::map<std::string, std::string> d;
  for (const auto& n : plan_of(z).nodes) d[n.id] = n.device;
  EXPECT_EQ(d.at("eval:fp16:ppl-wikitext2-chunks-ctx64-n256"), "cuda");
  EXPECT_EQ(d.at("eval:fp16:ppl-code-heldout-chunks-ctx64-n512"), "cpu");
  EXPECT_EQ(d.at("quantize:gptq-b4-g128-code"), "cpu");
  // Device is not part of any key.
  const SweepPlan p0 = plan_of(plain);
  ASSERT_EQ(p0.nodes.size(), plan.nodes.size());
  for (size_t i = 0; i < p0.nodes.size(); ++i) EXPECT_EQ(p0.nodes[i].key, plan.nodes[i].key);
}

// With two GPUs (an injected count) at most two CUDA nodes run at once, each on its own
// device; CPU nodes still run side by side within --jobs.
TEST(SweepRunner, TwoGpusRunAtMostTwoCudaNodesAtOnceEachOnItsOwnDevice) {
  std::string y = with_device("cuda");
  y.replace(y.find("  - {method: rtn"), 0, "  - {method: gptq, bits: 8, calibration: code}\n");
  const SweepPlan plan = plan_of(y);
  DeviceCountingRunner r;
  SweepRunOptions opt;
  opt.out_dir = test::make_temp_dir("fake") + "/out";
  opt.jobs = 6;
  opt.gpus = 2;
  opt.progress = false;
  const auto s = run_sweep(plan, opt, r);
  EXPECT_EQ(s.ran, 15);  // 1 calibration + 4 quantize + (1 + 4) x 2 evals
  EXPECT_EQ(r.max["cuda"], 2);
  EXPECT_FALSE(r.gpu_shared);
  EXPECT_FALSE(r.gpu_missing);
  EXPECT_EQ(r.gpus_seen, (std::set<int>{0, 1}));
  EXPECT_GE(r.max["cpu"], 2);  // calibration and the two RTN quantize nodes
}

TEST(SweepRunner, CpuNodesStillRunSideBySideWhenAGpuExists) {
  const SweepPlan plan = plan_of(with_device("cpu"));
  DeviceCountingRunner r;
  run_with_gpus(plan, test::make_temp_dir("fake") + "/out", r, 1);
  EXPECT_EQ(r.max.count("cuda"), 0u);
  EXPECT_GE(r.max["cpu"], 2);
}

TEST(SweepRunner, AutoTakesTheGpuWhenThereIsOneAndTheCpuWhenNot) {
  const SweepPlan plan = plan_of(with_device("auto"));
  DeviceCountingRunner with, without;
  run_with_gpus(plan, test::make_temp_dir("fake") + "/out", with, 1);
  run_with_gpus(plan, test::make_temp_dir("fake") + "/out", without, 0);
  EXPECT_EQ(with.device_of["quantize:gptq-b4-g128-code"], "cuda");
  EXPECT_EQ(with.max["cuda"], 1);
  EXPECT_EQ(without.device_of["quantize:gptq-b4-g128-code"], "cpu");
  EXPECT_EQ(without.max.count("cuda"), 0u);
}

TEST(SweepRunner, DeviceCudaWithoutAGpuFailsBeforeAnyWork) {
  const SweepPlan plan = plan_of(with_device("cuda"));
  const std::string out = test::make_temp_dir("fake") + "/out";
  DeviceCountingRunner r;
  try {
    run_with_gpus(plan, out, r, 0);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fake.yaml: device: cuda but no CUDA device is usable"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(r.device_of.empty());
  EXPECT_FALSE(fs::exists(out));
}

// Calibration and quantize nodes through the real stage runner, eval nodes through FakeRunner.
class RealQuantizeRunner : public NodeRunner {
 public:
  explicit RealQuantizeRunner(const SweepPlan& plan) : real_(make_stage_runner(plan)) {}
  void run(const NodeTask& t) override {
    if (t.node.kind == SweepNodeKind::Evaluate)
      fake_.run(t);
    else
      real_->run(t);
  }

 private:
  std::unique_ptr<NodeRunner> real_;
  FakeRunner fake_;
};

// A budgeted GPTQ node's meta.json records the per-linear bits (`gptq_bits`): the widths of
// the checkpoint the node wrote, and gptq_budget's own choice over the candidates it records.
TEST(SweepRunner, BudgetedGptqMetaRecordsTheChosenBitsPerLinear) {
  const std::string y = "name: fake\nmodel: " + test::tinycode_dir() +
                        "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 64}\n"
                        "variants:\n  - {method: gptq, budget_bpw: 3.5, calibration: code}\n"
                        "eval:\n  - {task: perplexity, dataset: code-heldout, ctx: 64}\n"
                        "report:\n  formats: [json]\n";
  const SweepPlan plan = plan_of(y);
  RealQuantizeRunner r(plan);
  SweepRunOptions opt;
  opt.out_dir = test::make_temp_dir("budget") + "/out";
  opt.gpus = 0;
  opt.progress = false;
  ASSERT_EQ(run_sweep(plan, opt, r).failed, 0);
  const SweepNode* q = nullptr;
  for (const SweepNode& n : plan.nodes)
    if (n.kind == SweepNodeKind::Quantize) q = &n;
  ASSERT_NE(q, nullptr);
  const std::string dir = opt.out_dir + "/store/" + q->key;
  std::ifstream in(dir + "/meta.json");
  const json meta = json::parse(in);
  ASSERT_TRUE(meta.contains("gptq_bits")) << meta.dump().substr(0, 400);
  const json& g = meta["gptq_bits"];
  EXPECT_EQ(g["budget_bpw"], 3.5);
  const LoadedModel m = load_model(dir + "/" + meta["model_path"].get<std::string>());
  ASSERT_EQ(g["linears"].size(), m.quantized.size());
  std::vector<std::vector<GptqBitsOption>> options;
  std::vector<int64_t> params;
  std::set<int> widths;
  for (size_t i = 0; i < m.quantized.size(); ++i) {
    const json& l = g["linears"][i];
    EXPECT_EQ(l["bits"], m.quantized[i].bits) << l["name"];  // what the node wrote
    widths.insert(m.quantized[i].bits);
    options.emplace_back();
    for (const json& c : l["candidates"])
      options.back().push_back(
          {c["bits"].get<int>(), c["bytes"].get<int64_t>(), c["cost"].get<double>()});
    params.push_back(m.quantized[i].rows * m.quantized[i].cols);
  }
  EXPECT_GE(widths.size(), 2u);  // a mix, not one width
  const GptqBitsChoice c = choose_gptq_bits(options, params, 3.5, "group_size 128");
  for (size_t i = 0; i < c.bits.size(); ++i) EXPECT_EQ(g["linears"][i]["bits"], c.bits[i]) << i;
  EXPECT_EQ(g["bytes"], c.bytes);
  EXPECT_LE(c.bytes, c.budget_bytes);
}

}  // namespace
}  // namespace qsweep
