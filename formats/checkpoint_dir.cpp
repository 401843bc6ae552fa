#include "formats/detail/checkpoint_dir.h"

#include <unistd.h>

#include "common/mapped_file.h"

namespace qsweep::detail {

namespace fs = std::filesystem;

void write_directory_atomically(const std::string& out_dir,
                                const std::function<void(const fs::path&)>& fill) {
  const fs::path out(out_dir);
  const std::string pid = std::to_string(::getpid());
  const fs::path tmp = out.parent_path() / (out.filename().string() + ".tmp-" + pid);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  const fs::path old = out.parent_path() / (out.filename().string() + ".old-" + pid);
  if (fs::exists(out)) fs::rename(out, old);
  fs::rename(tmp, out);
  fs::remove_all(old);
}

void copy_tokenizer_files(const std::string& source_dir, const fs::path& dir) {
  for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "generation_config.json"})
    if (fs::exists(fs::path(source_dir) / f)) {  // read_text_file: regular files only
      const std::string bytes = read_text_file((fs::path(source_dir) / f).string());
      write_file_atomic((dir / f).string(), bytes.data(), bytes.size());
    }
}

}  // namespace qsweep::detail
