// The qsweep binary end to end: bad input gives exit status 2 and one line on
// stderr naming the file and the problem; good input works and --json parses.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backends/backend.h"
#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/line_completion.h"
#include "eval/task.h"
#include "formats/formats.h"
#include "model/memory_estimate.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quantize/method.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

struct CliRun {
  int status = -1;
  std::string out, err;
};

// `prefix` goes before the binary (e.g. "timeout 10": a hang fails the test, status 124).
CliRun run(const std::string& args, const std::string& prefix = "") {
  const std::string dir = test::make_temp_dir("cli");
  const std::string cmd = prefix + " " + std::string(QSWEEP_BINARY_DIR) + "/qsweep " + args + " >" +
                          dir + "/out 2>" + dir + "/err </dev/null";
  const int rc = std::system(cmd.c_str());
  CliRun r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = read_text_file(dir + "/out");
  r.err = read_text_file(dir + "/err");
  return r;
}

void expect_clean_failure(const CliRun& r, std::initializer_list<std::string> fragments) {
  EXPECT_EQ(r.status, 2) << r.err;
  // One line of error (the progress bar and warnings are not printed before it).
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const auto& f : fragments) EXPECT_NE(r.err.find(f), std::string::npos) << r.err;
}

std::string tiny_model(const std::string& tag) {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 4096;  // tinycode's tokenizer is copied in below
  s.hidden_size = 8;
  s.intermediate_size = 8;
  s.num_layers = 1;
  s.num_heads = 2;
  s.num_kv_heads = 2;
  s.head_dim = 4;
  s.max_position_embeddings = 32;
  const std::string dir = test::make_temp_dir(tag);
  save_hf_checkpoint(dir, s, random_weights(s, 5), "F16");
  std::filesystem::copy_file(test::tinycode_dir() + "/tokenizer.model", dir + "/tokenizer.model");
  return dir;
}

TEST(Cli, InspectTinycode) {
  const CliRun r = run("inspect " + test::tinycode_dir() + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(j["parameters"], 6819072);
  EXPECT_EQ(j["tensors"].size(), 57u);
}

TEST(Cli, EvalJsonCarriesProvenance) {
  const CliRun r = run("eval --model " + test::tinycode_dir() + " --data-dir " + test::data_dir() +
                       " --dataset code-heldout --protocol strided --ctx 128 --stride 64"
                       " --max-tokens 1000 --json --no-progress");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["protocol"], "strided");
  EXPECT_EQ(j["ctx"], 128);
  EXPECT_EQ(j["stride"], 64);
  EXPECT_EQ(j["tokens_used"], 1000);
  EXPECT_EQ(j["scored_tokens"], 999);
  EXPECT_GT(j["perplexity"].get<double>(), 1.0);
}

TEST(Cli, EvalMaxMemoryRefusesUpFrontNamingTheNumber) {
  const std::string base = "eval --model " + test::tinycode_dir() + " --data-dir " +
                           test::data_dir() + " --dataset code-heldout --ctx 128" +
                           " --max-tokens 256 --no-progress --max-memory ";
  // tinycode's 13 MB of weights alone exceed 0.005 GiB (5.4 MB).
  const ModelSpec spec = load_model_spec(test::tinycode_dir());
  const int64_t mapped =
      int64_t(std::filesystem::file_size(test::tinycode_dir() + "/model.safetensors"));
  const MemoryEstimate e = estimate_peak_memory(spec, {mapped, 128, 128, 0});
  char need[32];
  std::snprintf(need, sizeof need, "%.3f", double(e.total()) / double(int64_t(1) << 30));
  expect_clean_failure(run(base + "0.005"), {"needs about " + std::string(need) + " GiB",
                                             "--max-memory is 0.005 GiB", "lower --ctx"});
  EXPECT_EQ(run(base + "0").status, 2);
  const CliRun ok = run(base + "8");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("perplexity"), std::string::npos) << ok.out;
}

// --max-device-memory (issue #16): bytes with a binary suffix; a bad value is one line naming
// the flag, the value and an example; on the CPU (host memory) it changes nothing; on CUDA a
// budget below two layer slots is one line naming the flag and the need (skipped without one).
TEST(Cli, EvalMaxDeviceMemoryParsesBytesAndRefusesTooSmall) {
  const std::string base = "eval --model " + test::tinycode_dir() + " --data-dir " +
                           test::data_dir() + " --dataset code-heldout --ctx 64" +
                           " --max-tokens 128 --no-progress --json --max-device-memory ";
  for (const char* bad : {"12Q", "0", "-1G", "G", "1.5Xi"})
    expect_clean_failure(run(base + bad + " --device cpu"),
                         {std::string("--max-device-memory '") + bad + "'", "e.g. 70G"});
  const CliRun cpu = run(base + "1KiB --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  const CliRun plain = run(base + "1T --device cpu");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(nlohmann::json::parse(cpu.out)["perplexity"],
            nlohmann::json::parse(plain.out)["perplexity"]);
  if (!cuda_available()) GTEST_SKIP() << "CUDA half: no CUDA: " << cuda_unavailable_reason();
  expect_clean_failure(run(base + "1K --device cuda"),
                       {"--max-device-memory = 1024 bytes", "two layer slots", "raise it"});
  const CliRun streamed = run(base + "4M --device cuda");  // tinycode: 1.5 MiB layers, all streamed
  EXPECT_EQ(streamed.status, 0) << streamed.err;
}

TEST(Cli, QuantizeMaxMemoryRefusesBeforeCalibrating) {
  const std::string out = test::make_temp_dir("maxmem") + "/gptq";
  const std::string base = "quantize --model " + test::tinycode_dir() + " --data-dir " +
                           test::data_dir() + " --method gptq --calib code --n-samples 2" +
                           " --seqlen 64 --quiet --out " + out + " --max-memory ";
  const ModelSpec spec = load_model_spec(test::tinycode_dir());
  const int64_t mapped =
      int64_t(std::filesystem::file_size(test::tinycode_dir() + "/model.safetensors"));
  const MemoryEstimate e = estimate_peak_memory(spec, {mapped, 128, 64, 128});
  char need[32];
  std::snprintf(need, sizeof need, "%.3f", double(e.total()) / double(int64_t(1) << 30));
  expect_clean_failure(run(base + "0.005"), {"needs about " + std::string(need) + " GiB",
                                             "lower --n-samples or --seqlen"});
  EXPECT_FALSE(std::filesystem::exists(out));
  const CliRun ok = run(base + "8");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(std::filesystem::exists(out));
}

TEST(Cli, ThreadsFlagAndEnvironmentLimitTheProcess) {
  const std::string eval = "eval --model " + test::tinycode_dir() + " --data-dir " +
                           test::data_dir() + " --dataset code-heldout --ctx 64 --max-tokens 128" +
                           " --json --no-progress";
  CliRun r = run(eval + " --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["threads"], 1);
  r = run(eval, "QSWEEP_THREADS=1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["threads"], 1);
  expect_clean_failure(run(eval + " --threads 0"), {"--threads 0", "positive"});
  expect_clean_failure(run(eval, "QSWEEP_THREADS=lots"), {"QSWEEP_THREADS='lots'"});
  expect_clean_failure(run("quantize --threads -3 --model x --out y"), {"--threads -3"});
  EXPECT_EQ(run("run --help").out.find("--threads N") != std::string::npos, true);
}

TEST(Cli, BadInputsExitWithStatus2AndOneLine) {
  const std::string data = " --data-dir " + test::data_dir();
  expect_clean_failure(run("eval --model /no/such/model --dataset wikitext2" + data),
                       {"/no/such/model"});
  expect_clean_failure(run("eval --model " + test::tinycode_dir() + " --dataset nope" + data),
                       {"dataset 'nope'"});
  expect_clean_failure(run("eval --modle x"), {"unknown option --modle", "did you mean --model"});
  expect_clean_failure(run("eval --model " + test::tinycode_dir() + " --protocol sliding" + data),
                       {"--protocol must be chunks or strided", "'sliding'"});
  expect_clean_failure(run("eval --model " + test::tinycode_dir() + " --ctx abc" + data),
                       {"--ctx must be an integer >= 2", "'abc'"});

  const std::string dir = tiny_model("trunc");
  const std::string f = dir + "/model.safetensors";
  std::filesystem::resize_file(f, std::filesystem::file_size(f) - 64);
  expect_clean_failure(run("eval --model " + dir + " --dataset wikitext2" + data),
                       {f, "truncated"});

  const std::string arch = tiny_model("arch");
  std::ofstream(arch + "/config.json") << R"({"architectures":["FalconForCausalLM"]})";
  expect_clean_failure(run("inspect " + arch), {"config.json", "'FalconForCausalLM'"});

  const std::string empty = test::make_temp_dir("empty") + "/empty.txt";
  std::ofstream(empty).close();
  expect_clean_failure(run("eval --model " + tiny_model("ok") + " --dataset " + empty + data),
                       {empty, "is empty"});
}

// `qsweep eval --task line_completion` is the library's line completion with the same
// options (computed here directly), and carries the task's protocol and item count.
TEST(Cli, EvalTaskRunsTheTaskWithTheGivenOptions) {
  const CliRun r = run("eval --model " + test::tinycode_dir() + " --data-dir " + test::data_dir() +
                       " --task line_completion --limit 12 --seed 3 --max-new-tokens 24 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["task"], "line_completion");
  EXPECT_EQ(j["metric"], "exact_match_pct");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["items"], 12);

  LoadedModel m = load_model(test::tinycode_dir());
  const Transformer model(m.spec, std::move(m.weights));
  const auto tok = load_tokenizer(test::tinycode_dir());
  LineCompletionOptions o;
  o.limit = 12;
  o.seed = 3;
  o.max_new_tokens = 24;
  o.context_tokens = model.spec().max_position_embeddings;
  const LineCompletionResult ref =
      run_line_completion(read_dataset_text(resolve_eval_dataset("code-heldout", test::data_dir())),
                          *tok, make_generate_fn(model, *tok), o);
  EXPECT_EQ(j["value"].get<double>(), 100 * ref.exact_match);
  EXPECT_EQ(j["edit_similarity_pct"].get<double>(), 100 * ref.edit_similarity);
  EXPECT_EQ(j["protocol"], ref.protocol);
}

TEST(Cli, EvalTaskOptionsAreCheckedLikeTheSweepFile) {
  const std::string m = "eval --model " + test::tinycode_dir() + " --data-dir " + test::data_dir();
  expect_clean_failure(run(m + " --task nope"), {"unknown task 'nope'", "humaneval"});
  expect_clean_failure(run(m + " --task humaneval --limit -3"),
                       {"--limit must be a non-negative integer", "'-3'"});
  expect_clean_failure(run(m + " --task humaneval --samples 4"),
                       {"--samples > 1 needs --temperature > 0"});
  expect_clean_failure(run(m + " --task gsm8k --temperature 0.5"),
                       {"--temperature does not apply to task 'gsm8k'"});
  expect_clean_failure(run(m + " --task perplexity --limit 3"),
                       {"--limit does not apply to task 'perplexity'"});
  expect_clean_failure(run(m + " --task mmlu --ctx 64"), {"--ctx does not apply to task 'mmlu'"});
  expect_clean_failure(run(m + " --task kld"), {"run it in a sweep"});
  // Absent benchmark data is reported as skipped, as in a sweep, not an error.
  const std::string empty = test::make_temp_dir("nodata");
  const CliRun r =
      run("eval --model " + test::tinycode_dir() + " --data-dir " + empty + " --task mbpp --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["value"].is_null());
  EXPECT_EQ(j["status"], "skipped: " + empty + "/mbpp/mbpp.jsonl not found");
}

// Each command's options come from one table: `--help` prints them with their defaults,
// and the method/task options are those of quantize/method.h's and eval/task.h's tables.
TEST(Cli, HelpListsEveryOptionWithItsDefaultFromTheTables) {
  for (const char* cmd : {"run", "plan", "report", "quantize", "eval", "inspect"}) {
    const CliRun r = run(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd << ": " << r.err;
    EXPECT_EQ(r.out.rfind(std::string("usage: qsweep ") + cmd, 0), 0u) << r.out;
  }
  const CliRun q = run("quantize --help");
  // Every method in the table, and each method option with its default and its users.
  for (const MethodInfo& m : all_methods()) EXPECT_NE(q.out.find(m.name), std::string::npos);
  EXPECT_NE(q.out.find("--group-size N"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("(default: 128)"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("--damp-percent F"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("--no-true-sequential"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("[rtn, gptq, awq]"), std::string::npos) << q.out;
  const CliRun e = run("eval --help");
  for (const TaskInfo& t : task_table())
    for (std::string k : t.keys) {
      std::replace(k.begin(), k.end(), '_', '-');
      EXPECT_NE(e.out.find("--" + k), std::string::npos) << k;
    }
  EXPECT_NE(e.out.find("--protocol chunks|strided"), std::string::npos) << e.out;
}

TEST(Cli, UnknownMethodListsEveryMethodTheOptionAccepts) {
  const CliRun r = run("quantize --model " + test::tinycode_dir() + " --method f8 --out /tmp/x");
  expect_clean_failure(r, {"unknown method 'f8'"});
  for (const MethodInfo& m : all_methods()) EXPECT_NE(r.err.find(m.name), std::string::npos);
  expect_clean_failure(
      run("quantize --model " + test::tinycode_dir() + " --method q4_k_m --bits 3 --out /tmp/x"),
      {"--bits does not apply to method q4_k_m"});
  expect_clean_failure(
      run("quantize --model " + test::tinycode_dir() + " --method rtn --desc-act --out /tmp/x"),
      {"--desc-act does not apply to method rtn", "gptq"});
  expect_clean_failure(run("quantize --model " + test::tinycode_dir() +
                           " --method gptq --damp-percent x --out /tmp/x"),
                       {"--damp-percent expects a number, got 'x'"});
  expect_clean_failure(run("run --max-memory lots configs/demo.yaml"),
                       {"--max-memory expects a number"});
}

TEST(Cli, ContextBeyondTrainedLengthWarns) {
  const CliRun r = run("eval --model " + tiny_model("warn") + " --data-dir " + test::data_dir() +
                       " --dataset code-heldout --ctx 64 --max-tokens 200 --no-progress");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("exceeds the model's max_position_embeddings 32"), std::string::npos)
      << r.err;
}

// Issue #13 classes 2-4 through the binary: a FIFO (or directory) where a file is expected
// fails at once; a wrongly typed JSON field names the file and key; a model whose outputs
// are not finite is an error naming the model and the first bad position, never a value.
TEST(Cli, HostileInputFilesFailCleanly) {
  const std::string data = " --data-dir " + test::data_dir();
  for (const char* name :
       {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"}) {
    const std::string dir = tiny_model("fifo");
    const std::string f = dir + "/" + name;
    std::filesystem::remove(f);
    ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0);
    expect_clean_failure(
        run("eval --model " + dir + " --dataset wikitext2 --max-tokens 64" + data, "timeout 10"),
        {f, "not a regular file"});
  }
  const std::string d = tiny_model("dirconfig");
  std::filesystem::remove(d + "/config.json");
  std::filesystem::create_directory(d + "/config.json");
  expect_clean_failure(run("inspect " + d, "timeout 10"),
                       {d + "/config.json", "not a regular file"});
  const std::string out = test::make_temp_dir("fifo-report");
  ASSERT_EQ(::mkfifo((out + "/results.json").c_str(), 0600), 0);
  expect_clean_failure(run("report " + out, "timeout 10"),
                       {out + "/results.json", "not a regular file"});

  // Wrong JSON kinds: exit 2, one line naming the file and the key.
  struct Edit {
    const char* file;
    const char* key;
    const char* value;
    const char* expect;
  };
  const Edit edits[] = {
      {"config.json", "hidden_act", "5", "key 'hidden_act' must be a string, got 5"},
      {"config.json", "rms_norm_eps", "0", "key 'rms_norm_eps' = 0 must be a finite number"},
      {"config.json", "rope_theta", "-1", "key 'rope_theta' = -1 must be a finite number"},
      {"config.json", "quantization_config", "null", "key 'quantization_config' is missing"},
      {"config.json", "quantization_config",
       R"({"quant_method": "gptq", "bits": 4, "group_size": "128"})",
       "key 'quantization_config.group_size' must be an integer, got \"128\""},
      {"tokenizer_config.json", "add_bos_token", "\"yes\"",
       "key 'add_bos_token' must be true or false"},
  };
  for (const auto& e : edits) {
    const std::string dir = tiny_model("typed");
    const std::string f = dir + "/" + e.file;
    nlohmann::json j = std::filesystem::exists(f) ? nlohmann::json::parse(read_text_file(f))
                                                  : nlohmann::json::object();
    j[e.key] = nlohmann::json::parse(e.value);
    std::ofstream(f, std::ios::trunc) << j.dump();
    expect_clean_failure(run("eval --model " + dir + " --dataset wikitext2 --max-tokens 64" + data),
                         {f + ": ", e.expect});
  }
  const std::string bad_results = test::make_temp_dir("bad-results");
  std::ofstream(bad_results + "/results.json") << R"({"variants": 5})";
  expect_clean_failure(run("report " + bad_results),
                       {bad_results + "/results.json: ", "no \"sweep\""});

  // Non-finite outputs: huge final-norm and lm_head weights overflow the logits.
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 4096;
  s.hidden_size = 8;
  s.intermediate_size = 8;
  s.num_layers = 1;
  s.num_heads = 2;
  s.num_kv_heads = 2;
  s.head_dim = 4;
  s.max_position_embeddings = 32;
  ModelWeights w = random_weights(s, 5);
  w.final_norm.setConstant(3e38f);
  w.lm_head.mutable_matrix().row(7).setConstant(3e38f);
  const std::string nan_dir = test::make_temp_dir("nonfinite");
  save_hf_checkpoint(nan_dir, s, w, "F32");
  std::filesystem::copy_file(test::tinycode_dir() + "/tokenizer.model",
                             nan_dir + "/tokenizer.model");
  const CliRun r =
      run("eval --model " + nan_dir + " --dataset wikitext2 --max-tokens 64 --ctx 16" + data);
  expect_clean_failure(r, {"model " + nan_dir, "eval 'ppl-", "the NLL of token 1 of the text",
                           "no perplexity is reported"});
  EXPECT_EQ(r.out.find("perplexity"), std::string::npos) << r.out;
}

// A bad --out is refused before any work, with exit 2 and one line naming the path and the
// problem; bad sweep-file shapes too; `qsweep plan` neither locks nor deletes.
TEST(Cli, AFifoAsTheSweepFileFailsAtOnce) {
  const std::string f = test::make_temp_dir("fifo-sweep") + "/sweep.yaml";
  ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0);
  for (const char* cmd : {"run", "plan"})
    expect_clean_failure(run(std::string(cmd) + " " + f, "timeout 10"), {f, "not a regular file"});
}

TEST(Cli, BadOutDirsAndSweepFileShapesExitWithStatus2AndOneLine) {
  const std::string dir = test::make_temp_dir("cli-out");
  const std::string sweep = dir + "/s.yaml";
  std::ofstream(sweep) << "name: t\nmodel: " << test::tinycode_dir()
                       << "\nvariants: [{method: rtn}]\neval: [{task: perplexity, dataset: "
                          "wikitext2, max_tokens: 64}]\n";
  const std::string data = " --data-dir " + test::data_dir();
  std::ofstream(dir + "/file") << "x";
  const std::string run_s = "run " + sweep + " --no-progress" + data + " --out ";
  expect_clean_failure(run(run_s + dir + "/file"), {"--out '" + dir + "/file'", "is a file"});
  expect_clean_failure(run(run_s + dir + "/file/sub"),
                       {"--out '" + dir + "/file/sub'", "'" + dir + "/file' is a file"});
  expect_clean_failure(run(run_s + "/dev/null"),
                       {"--out '/dev/null'", "is a character device, not a directory"});

  std::ofstream(dir + "/multi.yaml") << "name: t\nmodel: m\n---\nname: u\n";
  expect_clean_failure(run("plan " + dir + "/multi.yaml"),
                       {dir + "/multi.yaml:3:1: a second YAML document"});
  std::ofstream(dir + "/deep.yaml") << "name: t\nmodel: m\nvariants: " << std::string(100000, '[')
                                    << std::string(100000, ']') << "\n";
  expect_clean_failure(run("plan " + dir + "/deep.yaml"),
                       {dir + "/deep.yaml:3:74: maps and lists nest deeper than 64 levels"});

  // plan: a dead writer's temporary stays, and no lock file appears.
  const std::string out = dir + "/out";
  const std::string tmp = out + "/store/.tmp-k-pid999999999-start1-boot0-0";
  std::filesystem::create_directories(tmp);
  const CliRun p = run("plan " + sweep + data + " --out " + out);
  EXPECT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(std::filesystem::exists(tmp));
  EXPECT_FALSE(std::filesystem::exists(out + "/.lock"));
}

}  // namespace
}  // namespace qsweep

namespace qsweep {
namespace {

// --device on quantize: cuda without a usable GPU is one clear line (exit 2) saying why; an
// unknown device likewise; auto runs GPTQ on CUDA when usable, else on the CPU, and says which.
TEST(Cli, QuantizeDeviceFlagResolvesOrFailsInOneLine) {
  const std::string model = tiny_model("quant-device");
  const std::string dir = test::make_temp_dir("quant-device-out");
  const std::string base = "quantize --model " + model + " --data-dir " + test::data_dir() +
                           " --n-samples 2 --seqlen 16 --quiet --json";
  if (!cuda_available())
    expect_clean_failure(
        run(base + " --method gptq --device cuda --out " + dir + "/a"),
        {"--device cuda: ", cuda_unavailable_reason(), "use --device cpu or auto"});
  else
    expect_clean_failure(run(base + " --method rtn --device cuda --out " + dir + "/a"),
                         {"--method rtn runs on the CPU only so far"});
  expect_clean_failure(run(base + " --method gptq --device gpu --out " + dir + "/b"),
                       {"unknown device 'gpu'", "expected auto, cpu or cuda"});
  const CliRun r = run(base + " --method gptq --device auto --out " + dir + "/c");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string device = nlohmann::json::parse(r.out).at("device").get<std::string>();
  if (cuda_available())
    EXPECT_EQ(device.rfind("cuda:", 0), 0u) << device;
  else
    EXPECT_EQ(device, "cpu");
}

}  // namespace
}  // namespace qsweep
