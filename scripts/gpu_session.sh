#!/usr/bin/env bash
# The GPU session: staged, time-boxed, everything back in at most three files in $OUT
# (summary.json, session.log, session.tar.gz). See scripts/gpu_session.py.
#   on the GPU machine, repository root:  OUT=/some/dir bash scripts/gpu_session.sh
#   the same stages on this CPU, tiny:    OUT=/some/dir bash scripts/gpu_session.sh --dry-run
#   (or GPUBENCH_SESSION_DRY_RUN=1); --budget SECONDS, --only a,b, --box STAGE=SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PY:-python3}" scripts/gpu_session.py "$@"
