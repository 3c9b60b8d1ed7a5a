#!/usr/bin/env bash
# The test command: every unit, property and integration test of the workspace.
# Usage: scripts/test.sh [extra nextest arguments]
#
# The Slurm executor is tested against a real Slurm. When no controller answers, this
# starts a single-node cluster with fake GPUs (scripts/slurm-up.sh) if it runs as root, and
# otherwise stops with the command to run: the Slurm tests are never skipped. Prometheus,
# iproute2 and Chromium (for the console's browser test) are installed the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
if ! scontrol ping 2>/dev/null | grep -q UP; then
  if [ "$(id -u)" = 0 ]; then
    echo "== no Slurm controller answers: starting one (scripts/slurm-up.sh)"
    scripts/slurm-up.sh
  else
    cat >&2 <<'MSG'
The tests need a running Slurm (the Slurm executor is tested for real), and none answers
`scontrol ping`. Start a single-node cluster with fake GPUs, once per boot:

    sudo scripts/slurm-up.sh      # Debian/Ubuntu; stop it with: sudo scripts/slurm-down.sh

then run scripts/test.sh again.
MSG
    exit 1
  fi
fi
# The metrics test needs Prometheus and promtool, the partition test iproute2, the console
# test Chromium and its WebDriver: Debian's packages, installed here when missing and run
# as root.
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]} (Debian's packages) for the tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "The tests need ${missing[*]}: sudo apt-get install ${missing[*]}, then run scripts/test.sh again." >&2
    exit 1
  fi
fi
exec cargo nextest run --workspace --no-fail-fast "$@"
