#!/usr/bin/env bash
# `make test`'s runner: pytest writes its report to a file (var/test-run.log) and this script streams that
# file here. The tests therefore never write to the pipe of whoever reads our output: a reader that stalls
# or goes away cannot block or kill the run, and the exit code is pytest's own.
set -uo pipefail
trap '' PIPE # neither this script nor the reader below is killed if our own reader goes away
cd "$(dirname "$0")/.."
log=${TEST_LOG:-var/test-run.log}
mkdir -p "$(dirname "$log")"
: >"$log"
.venv/bin/python -m pytest -q "$@" >"$log" 2>&1 </dev/null &
tests=$!
tail -n +1 -f --pid="$tests" "$log" &
reader=$!
wait "$tests"
rc=$?
# tail ends by itself within a second of pytest, after printing the rest; do not wait on a stuck reader
for _ in $(seq 20); do
	kill -0 "$reader" 2>/dev/null || break
	sleep 0.5
done
kill "$reader" 2>/dev/null
echo "pytest exited with $rc (full report: $log)" >&2
exit "$rc"
