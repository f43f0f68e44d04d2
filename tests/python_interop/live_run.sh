#!/usr/bin/env bash
# Live interop check: the official `openai` client (`client.live.connect()`) holds a
# conversation with the simulator's Live mode, and every client event this crate's Live backend
# sends (recorded by tests/live_frames.rs) validates against `openai.types.live.ClientEvent`.
# Run from the repository root: bash tests/python_interop/live_run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="target/live-interop-venv"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/live_requirements.txt"

frames="$(mktemp)"
log="$(mktemp)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$log" "$frames"
}
trap cleanup EXIT

LIVE_FRAMES_OUT="$frames" cargo test -q --test live_frames
cargo build -q --example sim_server

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cargo run -q --example sim_server -- --addr "127.0.0.1:$port" --speed 0 >"$log" 2>&1 &
server_pid=$!

url=""
for _ in $(seq 1 300); do
    if grep -q "^live on " "$log"; then
        url="$(sed -n 's/^live on //p' "$log" | head -n 1)"
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
echo "simulator (Live): $url"

"$venv/bin/python" "$here/live_interop.py" "$url" "$frames"
