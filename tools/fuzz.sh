#!/usr/bin/env bash
# make fuzz: runs each cargo-fuzz target for a bounded time and prints its executions and
# crashes. The corpora start from the sample events; what libFuzzer finds stays in
# fuzz/corpus (ignored by git). cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the
# one stable toolchain on these machines accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
export RUSTC_BOOTSTRAP=1

mkdir -p fuzz/corpus/body_to_outcome fuzz/corpus/handler
for f in events/*.json; do
  cp "$f" "fuzz/corpus/handler/seed-$(basename "$f")"
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); sys.stdout.write(e.get("body") or "")' "$f" \
    > "fuzz/corpus/body_to_outcome/seed-$(basename "$f")"
done
cp tests/fixtures/contract-example-alert.json fuzz/corpus/body_to_outcome/seed-contract-example.json

# A target that does not build fails the run here, before any fuzzing time is spent.
echo "== building the fuzz targets"
cargo fuzz build --release

summary=()
failed=0
for target in body_to_outcome handler; do
  log=$(mktemp)
  echo "== fuzzing $target for ${seconds}s"
  status=0
  cargo fuzz run --release "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=1100000 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(grep -m1 "stat::number_of_executed_units" "$log" | awk "{print \$2}" || true)
  # What this run found (artifacts newer than its log), not what an earlier run left.
  crashes=$(find fuzz/artifacts/"$target" -type f -newer "$log" 2>/dev/null | wc -l)
  tail -n 5 "$log"
  summary+=("$target: ${execs:-?} executions, $crashes crashes/ooms/timeouts, exit $status")
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ] || [ -z "$execs" ]; then
    failed=1
    echo "== $target failed; its log:"
    tail -n 60 "$log"
  fi
done
echo
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "make fuzz: a target failed, crashed or ran nothing; reproduce with: cargo fuzz run <target> fuzz/artifacts/<target>/<file>" >&2
  exit 1
fi
