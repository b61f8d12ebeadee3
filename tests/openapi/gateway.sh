# Shared by tests/openapi/run.sh and tests/svix/run.sh (sourced, after `bin`
# and `venv` are set): a work directory removed at exit with the gateway
# stopped, free loopback ports, and starting the gateway on a config file.

work=$(mktemp -d)
gateway=
cleanup() {
    if [ -n "$gateway" ]; then
        kill "$gateway" 2>/dev/null || true
        wait "$gateway" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `$bin serve` on $work/hookgate.toml (its log in $work/hookgate.log)
# and waits until the admin listener on port $1 answers /healthz; a gateway
# that exits first fails the run with its log.
start_gateway() {
    "$bin" serve --config "$work/hookgate.toml" > "$work/hookgate.log" 2>&1 &
    gateway=$!
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$gateway" 2>/dev/null; then
            cat "$work/hookgate.log"
            echo "hookgate did not start" >&2
            exit 1
        fi
        sleep 0.1
    done
}
