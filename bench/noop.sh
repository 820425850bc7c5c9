#!/usr/bin/env bash
# Median wall time of a caught-up `edsync backfill` (fresh process), and the
# requests it sent: the issue's budget is 0.5 s and one HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/noop.py "$@"
