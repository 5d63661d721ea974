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
echo "== the store contract on PostgreSQL (TOLLGATE_TEST_POSTGRES, default 127.0.0.1:5432)"
TOLLGATE_STORE_CONTRACT=postgres cargo test --locked -p tollgate-store --test contract
echo "== the gateway, admin API, control-plane and CLI suites on PostgreSQL"
TOLLGATE_TEST_STORE=postgres cargo test --locked -p tollgate-gateway -p tollgate-admin -p tollgate-control -p tollgate --tests

echo "== the official OpenAI Python SDK against tollgate serve"
cargo build --locked --bin tollgate --features test-hooks
venv=target/sdk-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
TOLLGATE_BIN="$PWD/target/debug/tollgate" "$venv/bin/python" -m pytest -q tests/sdk

echo "== the official OpenAI Node SDK against tollgate serve"
if ! command -v npm >/dev/null; then
  apt-get install -y nodejs npm
fi
bin="$PWD/target/debug/tollgate"
(cd tests/sdk-node && npm ci --no-audit --no-fund --loglevel=error && TOLLGATE_BIN="$bin" npm test --silent)

echo "== the web console in real Chromium (playwright-core, axe-core)"
if ! command -v chromium >/dev/null; then
  apt-get install -y chromium || (apt-get update && apt-get install -y chromium)
fi
(cd tests/console && npm ci --no-audit --no-fund --loglevel=error && TOLLGATE_BIN="$bin" CHROMIUM="$(command -v chromium)" npm test --silent)
