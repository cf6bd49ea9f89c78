#!/usr/bin/env bash
# Run a command with IBPILOT_TEST_PG_URL pointing at a real PostgreSQL on 127.0.0.1.
# If the variable is already set, that server is used as it is. Otherwise
# scripts/pg-test-server.sh starts a throwaway one, and it is stopped again afterwards,
# whatever the command's outcome. The command's exit code is returned.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
started=""
if [[ -z "${IBPILOT_TEST_PG_URL:-}" ]]; then
    if ! url="$("$here/pg-test-server.sh")"; then
        echo "with-test-pg: could not start the test PostgreSQL server (see above)" >&2
        exit 1
    fi
    export IBPILOT_TEST_PG_URL="$url"
    started=yes
fi
"$@"
code=$?
if [[ -n "$started" ]]; then
    "$here/pg-test-server.sh" stop >/dev/null 2>&1 || true
fi
exit "$code"
