#!/bin/sh
# install-deps.sh - install the Debian packages paramd needs to build and test.
#
# Usage: deploy/install-deps.sh [--check] [--build-only] [--goldens] [--fuzz] [--demo]
#   --check    only report missing packages; exit 1 if any are missing.
#   --build-only  only the packages that build paramd, not the test packages
#              (deploy/docker/Dockerfile's build stage).
#   --goldens  also install python3-torch and python3-numpy, which the tests
#              need anyway (the Python client's), to regenerate the PyTorch
#              golden files under tests/.
#   --fuzz     also install clang and its libFuzzer runtime, for `make fuzz`.
#   --demo     also install python3-sklearn (the digits data set) and
#              python3-matplotlib, for `make demo` (examples/).
#
# The script is idempotent: packages already installed are left alone, and
# apt-get runs only when something is missing.  It must run as root to install
# (the Makefile calls it before the first build); without root it prints the
# command to run and fails.
set -eu

BUILD_PACKAGES="build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev liblapacke-dev libuv1-dev zlib1g-dev check libcurl4-openssl-dev"
# The Python client needs numpy; its RemoteOptimizer tests need torch.
# prometheus (a real server scraping /metrics, and its promtool linter) and
# chromium (headless, loading the dashboard) are for the integration tests;
# fonts-dejavu-core gives the dashboard screenshot its text.  python3-yaml
# reads the Kubernetes manifests (deploy/k8s/) in tests/integration/test_deploy.py.
# openssl makes the self-signed certificates of the TLS tests (curl checks them).
TEST_PACKAGES="python3 curl openssl python3-numpy python3-torch prometheus chromium fonts-dejavu-core python3-yaml"
GOLDEN_PACKAGES="python3-torch python3-numpy"
FUZZ_PACKAGES="clang libclang-rt-14-dev"
DEMO_PACKAGES="python3-sklearn python3-matplotlib"

check_only=0
build_only=0
packages="$BUILD_PACKAGES"
for argument in "$@"; do
    case "$argument" in
        --check) check_only=1 ;;
        --build-only) build_only=1 ;;
        --goldens) packages="$packages $GOLDEN_PACKAGES" ;;
        --fuzz) packages="$packages $FUZZ_PACKAGES" ;;
        --demo) packages="$packages $DEMO_PACKAGES" ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install-deps.sh: unknown option '$argument'" >&2; exit 2 ;;
    esac
done
[ "$build_only" = 1 ] || packages="$packages $TEST_PACKAGES"

missing=""
for package in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $package" ;;
    esac
done

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$check_only" = 1 ]; then
    echo "install-deps.sh: missing Debian packages:$missing" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: missing Debian packages:$missing" >&2
    echo "install-deps.sh: run as root: sudo $0 $*" >&2
    exit 1
fi

echo "install-deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps.sh: done" >&2
