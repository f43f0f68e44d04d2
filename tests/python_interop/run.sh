#!/usr/bin/env bash
# Interop checks, run from the repository root: bash tests/python_interop/run.sh
# * Realtime: the official Python Agents SDK holds a conversation (tool call included) with the
#   simulator (interop.py);
# * Live: the official `openai` client (`client.live.connect()`) converses with the simulator's
#   Live mode, and every client event this crate's Live backend sends (recorded by
#   tests/live_frames.rs) validates against `openai.types.live.ClientEvent` (live_interop.py).
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
frames=""
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$log" ${frames:+"$frames"}
}
trap cleanup EXIT

frames="$(mktemp)"
LIVE_FRAMES_OUT="$frames" cargo test -q --test live_frames

cargo run -q --example sim_server -- --addr "127.0.0.1:$port" --speed 0 >"$log" 2>&1 &
server_pid=$!

url=""
live_url=""
for _ in $(seq 1 300); do
    if grep -q "^live on " "$log"; then
        url="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
        live_url="$(sed -n 's/^live on //p' "$log" | head -n 1)"
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
echo "simulator: $url (Live: $live_url)"

status=0
"$venv/bin/python" "$here/interop.py" "$url" || status=$?
echo "== Live: the official openai client against the simulator's Live mode; the Live backend's client events against openai.types.live"
"$venv/bin/python" "$here/live_interop.py" "$live_url" "$frames" || status=$?
exit "$status"
