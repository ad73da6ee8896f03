#!/bin/sh
# Broker benchmark in one command; arguments go to `python -m benchmarks.broker_bench`
# (--help lists them).
set -eu
cd "$(dirname "$0")/.."
exec uv run python -m benchmarks.broker_bench "$@"
