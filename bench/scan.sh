#!/usr/bin/env bash
# tollgate scan against ripgrep (searching the same regular expressions) and detect-secrets
# (PyPI) on one generated tree, in one run: SIZE_MB of source-like text in many files, 20
# binaries, PLANTED secrets (Tollgate keys, OpenAI keys, AWS key ids) at known places.
# Each tool runs RUNS times over a warm page cache (after one warm-up run) and its best time
# counts; detect-secrets runs once, stopped after DS_TIMEOUT seconds (then its time is
# reported as "more than"). Prints a table and checks that tollgate found every planted secret.
#
#   SIZE_MB=1024 PLANTED=30 bench/scan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
PLANTED=${PLANTED:-30}
RUNS=${RUNS:-3}
DS_TIMEOUT=${DS_TIMEOUT:-3600}

work=$(mktemp -d /tmp/tollgate-scan-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! command -v rg >/dev/null; then
  echo "installing ripgrep (Debian)" >&2
  (apt-get install -y ripgrep || (apt-get update && apt-get install -y ripgrep)) >/dev/null
fi
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q detect-secrets
cargo build --release -p tollgate >&2
TG=target/release/tollgate

echo "writing a ${SIZE_MB} MiB tree with $PLANTED planted secrets" >&2
python3 bench/scan_tree.py "$work/tree" "$SIZE_MB" "$PLANTED" >/dev/null
files=$(find "$work/tree" -type f | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)

# ripgrep gets the scanner's own rules.
mapfile -t patterns < <("$TG" scan --list-rules --format json | python3 -c 'import json,sys; [print(r["pattern"]) for r in json.load(sys.stdin)]')
rg_args=()
for p in "${patterns[@]}"; do rg_args+=(-e "$p"); done

best() { # best wall time (s) of RUNS runs of "$@", after a warm-up
  "$@" >/dev/null 2>&1 || true
  local best=""
  for _ in $(seq "$RUNS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    best=$(python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); b=sys.argv[3]; print(min(t, float(b)) if b else t)" "$t0" "$t1" "$best")
  done
  echo "$best"
}

tg_time=$(best "$TG" scan "$work/tree" --no-progress --format json)
rg_time=$(best rg --hidden --no-heading -n "${rg_args[@]}" "$work/tree")

found=$("$TG" scan "$work/tree" --no-progress --format json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || true)
rg_lines=$(rg --hidden --no-heading -n "${rg_args[@]}" "$work/tree" | wc -l || true)

t0=$(date +%s.%N)
ds_status=0
# From the tree's own directory: inside a git repository, detect-secrets lists files with git.
(cd "$work" && timeout "$DS_TIMEOUT" "$work/venv/bin/detect-secrets" scan --all-files tree >"$work/ds.json" 2>/dev/null) || ds_status=$?
t1=$(date +%s.%N)
ds_time=$(python3 -c "import sys; print(float(sys.argv[2])-float(sys.argv[1]))" "$t0" "$t1")
ds_found="-"
if [[ $ds_status == 0 ]]; then
  ds_found=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(v) for v in d["results"].values()))' "$work/ds.json")
  ds_shown=$(printf '%.1f' "$ds_time")
else
  ds_shown="> $(printf '%.0f' "$ds_time") (stopped)"
fi

python3 - "$files" "$bytes" "$tg_time" "$rg_time" "$ds_time" "$ds_shown" "$found" "$rg_lines" "$ds_found" "$PLANTED" <<'PY'
import sys
files, size, tg, rg, ds, ds_shown, found, rg_lines, ds_found, planted = sys.argv[1:]
tg, rg, ds = float(tg), float(rg), float(ds)
print(f"tree: {int(files):,} files, {int(size) / 2**20:,.0f} MiB, {planted} planted secrets")
print(f"| tool | time (s) | found | vs tollgate |")
print(f"|---|---|---|---|")
print(f"| tollgate scan | {tg:.2f} | {found} | 1.00x |")
print(f"| rg, the same patterns | {rg:.2f} | {rg_lines} lines | tollgate takes {tg / rg:.2f}x rg's time |")
print(f"| detect-secrets scan --all-files | {ds_shown} | {ds_found} | tollgate is {ds / tg:,.0f}x faster |")
PY
if [[ $found != "$PLANTED" ]]; then
  echo "tollgate found $found of $PLANTED planted secrets" >&2
  exit 1
fi
