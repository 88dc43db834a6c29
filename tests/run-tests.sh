#!/bin/sh
# run-tests.sh - run every paramd test and print one summary line.
#
# Called by `make test` with BUILD (build directory) and PYTHON set.  Runs the
# Check unit-test binaries in $BUILD/tests, then the integration tests, which
# start the real $BUILD/paramd on free loopback ports.  Ends with
#   tests: N passed, M failed
# and exits non-zero if anything failed.
#
# UNIT_TESTS (names such as "test_core test_parallel") and INTEGRATION_TESTS
# (module names such as "test_load") restrict the run to those tests; `make
# test-tsan` uses them for the concurrency tests.  PARAMD_SANITIZE (0, 1 or
# thread, from make's SANITIZE) reaches the tests, which may shorten
# themselves under a sanitizer (test_load.py does).
set -u
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
UNIT_TESTS=${UNIT_TESTS:-}
INTEGRATION_TESTS=${INTEGRATION_TESTS:-}
export PARAMD_SANITIZE=${PARAMD_SANITIZE:-0}
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== unit and conformance tests (Check)"
if [ -n "$UNIT_TESTS" ]; then
    binaries=$(for name in $UNIT_TESTS; do echo "$BUILD/tests/$name"; done)
else
    binaries=$(ls "$BUILD"/tests/test_* 2>/dev/null)
fi
for binary in $binaries; do
    if [ ! -x "$binary" ]; then
        [ -n "$UNIT_TESTS" ] && { echo "run-tests: $binary missing"; failed=$((failed + 1)); }
        continue
    fi
    # stderr (server log lines) is kept apart so it cannot split Check's summary.
    # The client tests start $PARAMD_BINARY themselves.
    PARAMD_BINARY="$BUILD/paramd" CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-600} "$binary" \
        >"$log" 2>"$log.stderr"
    status=$?
    cat "$log"
    sed 's/^/    log: /' "$log.stderr"
    rm -f "$log.stderr"
    # Check prints "100%: Checks: 12, Failures: 0, Errors: 0".
    counts=$(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -1)
    if [ -z "$counts" ]; then
        echo "run-tests: $binary printed no Check summary (exit $status)"
        failed=$((failed + 1))
        continue
    fi
    set -- $counts
    passed=$((passed + $1 - $2 - $3))
    failed=$((failed + $2 + $3))
    if [ "$status" -ne 0 ] && [ "$2" -eq 0 ] && [ "$3" -eq 0 ]; then
        echo "run-tests: $binary exited $status"
        failed=$((failed + 1))
    fi
done

echo "== integration tests (real server on loopback)"
if [ -n "$INTEGRATION_TESTS" ]; then
    PYTHONPATH=tests/integration PARAMD_BINARY="$BUILD/paramd" "$PYTHON" -m unittest -v $INTEGRATION_TESTS >"$log" 2>&1
else
    PARAMD_BINARY="$BUILD/paramd" "$PYTHON" -m unittest discover -s tests/integration -p 'test_*.py' -v >"$log" 2>&1
fi
status=$?
cat "$log"
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' "$log" | tail -1)
bad=$(sed -n 's/^FAILED (\(.*\))/\1/p' "$log" | tr ',' '\n' | sed -n 's/.*=\([0-9]*\)/\1/p' | awk '{s += $1} END {print s + 0}')
skipped=$(sed -n 's/.*skipped=\([0-9]*\).*/\1/p' "$log" | tail -1)
ran=${ran:-0}
skipped=${skipped:-0}
if [ "$ran" -eq 0 ]; then
    echo "run-tests: the integration suite ran no test (exit $status)"
    failed=$((failed + 1))
else
    passed=$((passed + ran - bad - skipped))
    failed=$((failed + bad))
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "run-tests: the integration suite exited $status"
        failed=$((failed + 1))
    fi
fi

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
