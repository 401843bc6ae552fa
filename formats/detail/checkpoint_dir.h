#if !defined(QSWEEP_IN_FORMATS)
#error "formats/detail/ is private to qsweep_formats; include formats/formats.h or formats/gguf.h"
#endif
// Writing a checkpoint directory (GPTQ, AWQ) as a whole: nothing half-written is ever left at
// the destination, and an existing checkpoint there is replaced only by a complete one.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace qsweep::detail {

/// Calls `fill(tmp)` with a fresh sibling directory of `out_dir`, then puts it at `out_dir`
/// (an older directory there is removed only once the new one is in place). If `fill` throws,
/// the temporary directory is removed and the error passes on; `out_dir` is left untouched.
void write_directory_atomically(const std::string& out_dir,
                                const std::function<void(const std::filesystem::path&)>& fill);

/// Copies the tokenizer and generation files `source_dir` has (tokenizer.model,
/// tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json) into
/// `dir`, so the checkpoint loads on its own in transformers, GPTQModel and AutoAWQ.
void copy_tokenizer_files(const std::string& source_dir, const std::filesystem::path& dir);

}  // namespace qsweep::detail
