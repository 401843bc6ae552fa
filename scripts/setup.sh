#!/usr/bin/env bash
# Installs qsweep's Debian packages (idempotent), configures and builds.
#   scripts/setup.sh            release build in ./build
#   scripts/setup.sh --sanitize ASan+UBSan build in ./build-asan
# Nothing is downloaded at build time: every dependency is a Debian package.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config git
          libeigen3-dev libtbb-dev libyaml-cpp-dev nlohmann-json3-dev
          libsentencepiece-dev libpcre2-dev libutf8proc-dev libgtest-dev libgmock-dev
          libbenchmark-dev clang-format
          chromium fonts-dejavu-core
          python3 zlib1g-dev libseccomp-dev libxxhash-dev
          slurm-wlm munge
          libopenblas-dev)  # bench/peers: cblas_ssyrk, the Hessian row's peer

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = "--sanitize" ]; then
  build_dir=build-asan
  # -O2 keeps the sanitized suite fast; -g1 (line tables only) still gives file:line
  # stacks and compiles ~1/3 faster than -g — this build is most of CI's time.
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
         -DQSWEEP_SANITIZE=ON -DQSWEEP_BUILD_BENCH=OFF)
fi
jobs=$(nproc)
cmake -S . -B "$build_dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$build_dir" -j "$jobs"
echo "setup: built $build_dir/qsweep"
