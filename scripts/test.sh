#!/usr/bin/env bash
# Every check and every test, from a fresh checkout. The README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== formatting"
cargo fmt --all -- --check
echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
