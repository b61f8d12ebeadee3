#!/usr/bin/env bash
# The admin API against its OpenAPI document (docs/openapi.json):
#  1. the document validates (openapi-spec-validator, OpenAPI 3.1);
#  2. schemathesis runs its stateless checks (examples, coverage, fuzzing) and
#     its stateful tests (following the document's links: create a destination,
#     then read, change, pause, rotate and delete it; publish an event, then read
#     and replay its message) against the real binary, with the admin token:
#     no 5xx, no status, content type, header or body the document does not say.
#
# Usage: tests/openapi/run.sh [BINARY] [VENV]
#   BINARY  the hookgate binary (default target/debug/hookgate)
#   VENV    a virtualenv with tests/openapi/requirements.txt (default target/openapi/venv)
# Environment: OPENAPI_MAX_EXAMPLES (default 50) bounds the cases per operation.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/hookgate}
venv=${2:-target/openapi/venv}
doc=docs/openapi.json

"$venv/bin/python" -m openapi_spec_validator "$doc"

. tests/openapi/gateway.sh
ingest=$(free_port)
admin=$(free_port)
nothing=$(free_port)
token=openapi-check-token
cat > "$work/hookgate.toml" <<CONFIG
[server]
listen = "127.0.0.1:$ingest"
admin_listen = "127.0.0.1:$admin"
admin_tokens = ["$token"]
# Destinations made by the run point at loopback addresses.
allow_private_destinations = true
shutdown_grace = "2s"

[storage]
path = "$work/hookgate.db"

[[sources]]
name = "app"

[[destinations]]
name = "push"
url = "http://127.0.0.1:$nothing/hook"
retry = { schedule = ["1s", "1s"] }

[[destinations]]
name = "inbox"
type = "pull"

[[routes]]
source = "app"
to = ["push", "inbox"]
CONFIG

start_gateway "$admin"
# A message and a refused request, so that the listings have something to show.
curl -fsS -o /dev/null -H 'content-type: application/json' -d '{"hello":"world"}' "http://127.0.0.1:$ingest/in/app"
curl -sS -o /dev/null "http://127.0.0.1:$ingest/in/nope" || true

status=0
"$venv/bin/schemathesis" run "$doc" \
    --url "http://127.0.0.1:$admin" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-50}" \
    --workers 2 \
    --request-timeout 30 \
    --seed 1 \
    --report-dir "$work/report" \
    || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- hookgate log (last 50 lines)"
    tail -n 50 "$work/hookgate.log"
fi
exit "$status"
