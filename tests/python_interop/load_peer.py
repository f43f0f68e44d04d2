"""The Python peer of `examples/vs_python.rs`: the load test's traffic through the official
OpenAI Agents SDK (`agents.realtime`), with the client's own CPU measured.

Usage (vs_python starts it; standalone works too, against `cargo run --release --example
sim_server -- --stamp-audio` and the cycle from `vs_python --write-pcm cycle.pcm`):

    target/interop-venv/bin/python tests/python_interop/load_peer.py \
        --url ws://127.0.0.1:PORT/v1/realtime --pcm cycle.pcm --sessions 8 --seconds 10 --warmup 3

Each session is a `RealtimeRunner` (its own `OpenAIRealtimeWebSocketModel`) over an agent with
the same instructions and `get_weather` tool as `examples/loadtest.rs`. It streams the PCM16
24 kHz cycle in `--pcm` (written by vs_python from the Rust harness's microphone cycle) in
20 ms chunks with `session.send_audio`, one pacer coroutine per 64 sessions, session `i`
starting at chunk `(i * 7919) % len` (`i` counts from `--first-index`), and reads every session
event. Turn detection is server VAD (the simulator's default, as the Rust client gets) and input
transcription is off (the SDK would otherwise ask for it and receive events the Rust client does
not), so both clients see the same server traffic.

With `--sync` it prints `ready` once its sessions are connected and waits for a line on stdin
before streaming (vs_python starts several of these processes together). After the warmup and
the measured window it prints one JSON line: `client_cpu_seconds` (`resource.getrusage`
user + sys of this process over the window), `chunks_in` (microphone chunks sent),
`chunks_out` (audio events received), delays of stamped audio, tool calls, interruptions and
`errors` (session errors, failed connects, sessions that ended early). Exit code 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import sys
import time

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

CHUNK_BYTES = 960  # 20 ms of PCM16 at 24 kHz
CHUNK_S = 0.020
PACER_GROUP = 64
CONNECT_CONCURRENCY = 64
STAMP_MAGIC = b"RTA1"  # simulator::audio_stamp: u64 LE µs since the epoch, then this


@function_tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny and 21 degrees in {city}"


class Stats:
    def __init__(self) -> None:
        self.chunks_in = 0
        self.chunks_out = 0
        self.unstamped = 0
        self.tool_calls = 0
        self.interruptions = 0
        self.errors = 0
        self.connect_failures = 0
        self.delays_ms: list[float] = []
        self.recording = False
        self.stopping = False

    def error(self, what: str) -> None:
        self.errors += 1
        if self.errors <= 5:
            print(f"session error: {what}", file=sys.stderr, flush=True)

    def snapshot(self) -> tuple[int, int, int, int, int]:
        return (self.chunks_in, self.chunks_out, self.unstamped, self.tool_calls, self.interruptions)


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def consume(session, stats: Stats) -> None:
    """Reads one session's events until the session ends."""
    try:
        async for event in session:
            kind = event.type
            if kind == "audio":
                stats.chunks_out += 1
                data = event.audio.data
                if len(data) >= 12 and data[8:12] == STAMP_MAGIC:
                    if stats.recording:
                        (sent_us,) = struct.unpack_from("<Q", data, 0)
                        stats.delays_ms.append(max(0.0, time.time() * 1e3 - sent_us / 1e3))
                else:
                    stats.unstamped += 1
            elif kind == "tool_start":
                stats.tool_calls += 1
            elif kind == "audio_interrupted":
                stats.interruptions += 1
            elif kind == "error":
                stats.error(repr(event.error))
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the SDK re-raises transport errors from the iterator
        if not stats.stopping:
            stats.error(f"session failed: {e!r}")
        return
    if not stats.stopping:
        stats.error("session stream ended early")


async def pace(group: list[list], cycle: list[bytes], stats: Stats) -> None:
    """Feeds a group of sessions one 20 ms chunk each per tick; late ticks fire at once (as
    tokio's `MissedTickBehavior::Burst` in the Rust harness)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    k = 0
    while not stats.stopping:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for slot in group:
            session = slot[0]
            if session is None:
                continue
            try:
                await session.send_audio(cycle[(k + slot[1]) % len(cycle)])
                stats.chunks_in += 1
            except Exception as e:
                if not stats.stopping:
                    stats.error(f"send_audio: {e!r}")
                slot[0] = None
        k += 1
        due += CHUNK_S


def quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, int(-(-len(sorted_values) * q // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run(args: argparse.Namespace) -> dict:
    with open(args.pcm, "rb") as f:
        pcm = f.read()
    cycle = [pcm[i : i + CHUNK_BYTES].ljust(CHUNK_BYTES, b"\0") for i in range(0, len(pcm), CHUNK_BYTES)]
    if not cycle:
        raise SystemExit(f"{args.pcm}: no audio")

    agent = RealtimeAgent(
        name="Assistant",
        instructions="You are a helpful voice assistant.",
        tools=[get_weather],
    )
    model_config = {
        "url": args.url,
        "api_key": "sk-loadtest",
        "initial_model_settings": {
            "turn_detection": {"type": "server_vad", "interrupt_response": True},
            "input_audio_transcription": None,
        },
    }
    stats = Stats()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect():
        async with gate:
            # One runner per session: a runner holds one model, i.e. one WebSocket.
            session = await RealtimeRunner(agent).run(model_config=model_config)
            await session.enter()
            return session

    results = await asyncio.gather(*(connect() for _ in range(args.sessions)), return_exceptions=True)
    sessions = []
    slots = []
    consumers = []
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            stats.connect_failures += 1
            stats.error(f"connect: {r!r}")
            continue
        sessions.append(r)
        slots.append([r, (args.first_index + i) * 7919 % len(cycle)])
        consumers.append(asyncio.create_task(consume(r, stats)))
    await asyncio.sleep(0.5)

    if args.sync:
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line:
            raise SystemExit("stdin closed before the start signal")

    pacers = [
        asyncio.create_task(pace(slots[g : g + PACER_GROUP], cycle, stats))
        for g in range(0, len(slots), PACER_GROUP)
    ]
    await asyncio.sleep(args.warmup)

    # The measured window.
    before = stats.snapshot()
    cpu_before = cpu_seconds()
    stats.recording = True
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - started
    cpu_after = cpu_seconds()
    stats.recording = False
    after = stats.snapshot()
    delays = sorted(stats.delays_ms)
    errors_in_run = stats.errors

    # Wind down.
    stats.stopping = True
    for p in pacers:
        p.cancel()
    await asyncio.gather(*pacers, return_exceptions=True)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(s.close() for s in sessions), return_exceptions=True), 10
        )
    except asyncio.TimeoutError:
        print("warning: sessions did not close within 10 s", file=sys.stderr)
    for c in consumers:
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)

    user = cpu_after[0] - cpu_before[0]
    sys_ = cpu_after[1] - cpu_before[1]
    d = [a - b for a, b in zip(after, before)]
    r = lambda x, n: None if x is None else round(x, n)  # noqa: E731
    return {
        "sessions": len(sessions),
        "seconds": round(elapsed, 3),
        "client_cpu_seconds": round(user + sys_, 4),
        "client_user_cpu_seconds": round(user, 4),
        "client_sys_cpu_seconds": round(sys_, 4),
        "chunks_in": d[0],
        "chunks_out": d[1],
        "unstamped_chunks": d[2],
        "tool_calls": d[3],
        "interruptions": d[4],
        "delay_p50_ms": r(quantile(delays, 0.50), 2),
        "delay_p99_ms": r(quantile(delays, 0.99), 2),
        "delay_max_ms": r(delays[-1] if delays else None, 2),
        "errors": errors_in_run,
        "connect_failures": stats.connect_failures,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the simulator's WebSocket URL")
    p.add_argument("--pcm", required=True, help="the microphone cycle, raw PCM16 24 kHz mono")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="measured window")
    p.add_argument("--warmup", type=float, default=3.0, help="streaming before the window")
    p.add_argument("--first-index", type=int, default=0, help="index of the first session")
    p.add_argument("--sync", action="store_true", help="print 'ready', wait for a stdin line")
    args = p.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report), flush=True)
    return 1 if report["errors"] > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
