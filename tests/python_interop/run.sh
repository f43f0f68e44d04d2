#!/usr/bin/env bash
# Interop check: the official Python Agents SDK holds a conversation (tool call included)
# with the simulator. Run from the repository root: bash tests/python_interop/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="target/interop-venv"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

cargo build -q --example sim_server

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

cargo run -q --example sim_server -- --addr "127.0.0.1:$port" --speed 0 >"$log" 2>&1 &
server_pid=$!

url=""
for _ in $(seq 1 300); do
    if grep -q "^listening on " "$log"; then
        url="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "sim_server exited early:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "sim_server did not start listening within 30 s:" >&2
    cat "$log" >&2
    exit 1
fi
echo "simulator: $url"

status=0
"$venv/bin/python" "$here/interop.py" "$url" || status=$?
exit "$status"
