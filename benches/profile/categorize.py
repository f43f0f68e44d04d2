"""Groups a `perf script` dump of a load harness into the costs a voice session is made of.

Usage: perf script -i perf.data | python3 categorize.py [CPU_US_PER_CHUNK]

Each sample goes to one group, from its call stack: kernel samples by the system call they
serve, user samples by the innermost frame that belongs to a known layer (a `memcpy` inside the
WebSocket codec counts as the codec). With the harness's `cpu_us_per_chunk` from the same run,
each group's share is also printed in microseconds per 20 ms chunk.
"""

import re
import sys
from collections import Counter

# Kernel samples: the first pattern found anywhere in the stack wins.
KERNEL = [
    ("kernel: send (write syscalls, loopback delivery to the peer)",
     r"__sys_sendto|tcp_sendmsg|sock_write_iter|__x64_sys_write\b"),
    ("kernel: receive (read syscalls)", r"__sys_recvfrom|tcp_recvmsg|sock_read_iter|__x64_sys_read\b"),
    ("kernel: sleep and wake (epoll, futex, scheduler, timers)",
     r"epoll|futex|schedule|hrtimer|try_to_wake_up|finish_task_switch|__x64_sys_sched_yield"),
    # Loopback delivery that ran in a softirq whose stack was cut short.
    ("kernel: send (write syscalls, loopback delivery to the peer)", r"net_rx_action|__local_bh_enable_ip"),
]
# User samples: from the leaf outwards, the first frame that matches a layer wins.
USER = [
    ("base64", r"base64_simd|base64::"),
    ("JSON encode and decode", r"serde_json|::protocol::decode|ServerEvent::from_json|json_escape"),
    ("WebSocket framing (transport::websocket: framing, masking, buffers)",
     r"tungstenite::|realtime_agents::transport::websocket"),
    ("tracing spans", r"^tracing::|tracing_core"),
    ("event queue and command channel", r"session::queue|tokio::sync::mpsc|tokio::sync::task::atomic_waker"),
    ("session driver (history, turns, playback, tools)", r"realtime_agents::session|realtime_agents::items"),
    ("transport and protocol glue", r"realtime_agents::transport|realtime_agents::model|realtime_agents::protocol"),
    ("simulator", r"realtime_agents::simulator"),
    ("application (harness: pacers, consumers)", r"^loadtest::|^loopback_floor::|^measure::"),
    ("tokio: tasks, wake-ups, I/O readiness, timers", r"^tokio::|^<tokio|raw_waker|futures_core::task|futures_util"),
    ("allocator", r"^(malloc|free|cfree|realloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate)"),
]
SKIP = re.compile(r"^(__mem|mem(cpy|move|set|cmp)|<?alloc::|<?core::|__rustc|bytes::)")


def classify(frames):
    if not frames:
        return "unknown"
    if frames[0][1]:  # kernel leaf
        names = " ".join(f for f, _ in frames)
        for group, pattern in KERNEL:
            if re.search(pattern, names):
                return group
        return "kernel: other"
    for name, kernel in frames:
        if kernel:
            continue
        for group, pattern in USER:
            if re.search(pattern, name):
                return group
    leaf = frames[0][0]
    if re.match(r"^(__mem|mem)", leaf):
        return "memcpy/memset (caller not recorded)"
    if re.match(r"^(malloc|free|cfree|_int_)", leaf):
        return "allocator"
    return "other user code"


def main():
    per_chunk = float(sys.argv[1]) if len(sys.argv) > 1 else None
    counts = Counter()
    frames = []
    for line in list(sys.stdin) + [""]:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                counts[classify(frames)] += 1
            frames = []
            continue
        if not line.startswith(("\t", " ")):
            continue  # the sample's header
        m = re.match(r"\s*[0-9a-f]+ (.+?)\+0x[0-9a-f]+ \((.*)\)$", line) or re.match(
            r"\s*[0-9a-f]+ (.+) \((.*)\)$", line)
        if m:
            name = m.group(1)
            if not SKIP.match(name) or not frames:
                frames.append((name, "kernel" in m.group(2)))
    total = sum(counts.values())
    print(f"{total} samples" + (f", {per_chunk} us per chunk" if per_chunk else ""))
    for group, n in counts.most_common():
        share = n / total
        extra = f"  {share * per_chunk:6.2f} us" if per_chunk else ""
        print(f"{share * 100:5.1f}%{extra}  {group}")


if __name__ == "__main__":
    main()
