//! What the traffic of `loadtest` costs with no library at all: the floor under any client.
//!
//! ```text
//! cargo run --release --example loopback_floor -- --sessions 300 --seconds 10
//! ```
//!
//! N plain TCP connections over loopback, each carrying one 1,400-byte frame every 20 ms in
//! each direction (the size of a WebSocket frame holding a 20 ms `response.output_audio.delta`
//! or `input_audio_buffer.append`), paced and measured like `loadtest`: a server in a child
//! process sends frames stamped with their send time, the client reads them on one task per
//! connection, and pacer tasks (64 connections each) write the client's frames. There is no
//! WebSocket, JSON, base64 or session: the client only reads, checks the stamp and writes, on
//! the same tokio runtime. What this costs per 20 ms chunk is what the kernel and the runtime
//! charge on this machine before a client does anything useful.
//!
//! `--hops` adds the task layout of a session: each frame read goes through a channel to
//! another task (the application reading events), and each frame written comes through a
//! channel from the pacer to the task that owns the socket (the session task), so the cost of
//! those hand-offs shows on its own.
//!
//! `--codec` also does the wire work a session does per chunk, with this crate's own codec, in
//! the task that owns the socket: each chunk written is first encoded as an
//! `input_audio_buffer.append` (base64 and JSON), each chunk read is decoded as a
//! `response.output_audio.delta` (JSON and base64, into the model's events). With `--hops` as
//! well, what is left between this and `loadtest` is the session's own work: its state, its
//! events, the WebSocket framing.
//!
//! Prints one JSON line with the fields of `loadtest` that apply: `cpu_us_per_chunk` (client
//! CPU, user + system, over the chunks moved both ways), `cpu_ms_per_stream_second`, the
//! delays from the server's write to the client's read, and `server_cpu_seconds`.

#[path = "support/measure.rs"]
mod measure;
#[path = "support/mic.rs"]
mod mic;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use realtime_agents::model::bench::Wire;
use realtime_agents::model::{ModelCommand, ModelEvent};

use measure::{Histogram, announce_and_wait, args_or_exit, pid_cpu, process_cpu, spawn_server};
use mic::{CHUNK, CHUNK_BYTES, PACER_GROUP};

const USAGE: &str = "usage: loopback_floor [--sessions N] [--seconds T] [--warmup W] [--workers W]\n\
     --sessions  concurrent connections (default 100)\n\
     --seconds   measured window (default 10)\n\
     --warmup    seconds of traffic before the window (default 3)\n\
     --workers   runtime worker threads, client and server each (default 2)\n\
     --hops      pass every frame through a channel to another task, both ways (as a session does)\n\
     --codec     encode and decode each chunk with the crate's wire codec, as a session does\n\
     --server-share  the share of 20 ms ticks on which the server sends (default 1; loadtest's\n\
                 assistant talks about 0.63 of the time: use that to move the same mix of chunks)\n\
     --serve     run only the server and print its address (used by the default mode)";

/// One frame: about a WebSocket frame with 20 ms of 24 kHz PCM16 in base64 JSON.
const FRAME: usize = 1400;

struct Args {
    sessions: usize,
    seconds: f64,
    warmup: f64,
    workers: usize,
    hops: bool,
    codec: bool,
    server_share: f64,
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 100,
        seconds: 10.0,
        warmup: 3.0,
        workers: 2,
        hops: false,
        codec: false,
        server_share: 1.0,
        serve: false,
    };
    let mut flags = measure::Flags::new();
    while let Some(arg) = flags.next_flag() {
        match arg.as_str() {
            "--sessions" => args.sessions = flags.value(&arg)?,
            "--seconds" => args.seconds = flags.value(&arg)?,
            "--warmup" => args.warmup = flags.value(&arg)?,
            "--workers" => args.workers = flags.value(&arg)?,
            "--hops" => args.hops = true,
            "--codec" => args.codec = true,
            "--server-share" => args.server_share = flags.value(&arg)?,
            "--serve" => args.serve = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.workers = args.workers.max(1);
    Ok(args)
}

fn main() {
    let args = args_or_exit(parse_args(), USAGE);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("runtime");
    let result = if args.serve {
        rt.block_on(serve(args.server_share.clamp(0.0, 1.0)))
    } else {
        rt.block_on(run(&args))
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Writes a frame to every connection of the group on a `share` of the 20 ms ticks (spread
/// evenly) until `stop`; a frame starts with its send time. Connections whose peer is gone are
/// dropped. With `codec`, each frame is first encoded as an audio append, on the connection's
/// own wire state.
async fn pace(
    mut group: Vec<OwnedWriteHalf>,
    share: f64,
    codec: bool,
    sent: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) {
    let audio = pcm_chunk();
    let mut wires: Vec<Wire> = match codec {
        true => group.iter().map(|_| Wire::new()).collect(),
        false => Vec::new(),
    };
    let mut frame = vec![0u8; FRAME];
    let mut tick = tokio::time::interval(CHUNK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut k = 0u64;
    while !*stop.borrow() && !group.is_empty() {
        tick.tick().await;
        k += 1;
        if ((k as f64) * share).floor() == (((k - 1) as f64) * share).floor() {
            continue;
        }
        let mut i = 0;
        while i < group.len() {
            if let Some(wire) = wires.get_mut(i) {
                let audio = audio.clone();
                wire.encode(ModelCommand::Audio {
                    audio,
                    commit: false,
                });
            }
            frame[..8].copy_from_slice(&now_us().to_le_bytes());
            if group[i].write_all(&frame).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            } else {
                group.swap_remove(i);
                if i < wires.len() {
                    wires.swap_remove(i);
                }
            }
        }
    }
}

/// `--serve`: accepts connections, sends each a paced stream of frames and discards what it
/// reads, until stdin closes (the parent exited).
async fn serve(share: f64) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (_stop_tx, stop) = watch::channel(false);
    let sent = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        let mut group = Vec::new();
        loop {
            // A group starts pacing once it is full, or when no connection came for 200 ms.
            let accepted =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
            match accepted {
                Ok(Ok((stream, _))) => {
                    let _ = stream.set_nodelay(true);
                    let (mut read, write) = stream.into_split();
                    tokio::spawn(async move {
                        let mut sink = vec![0u8; 16 * 1024];
                        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
                    });
                    group.push(write);
                    if group.len() < PACER_GROUP {
                        continue;
                    }
                }
                Ok(Err(_)) => continue,
                Err(_) if group.is_empty() => continue,
                Err(_) => {}
            }
            tokio::spawn(pace(
                std::mem::take(&mut group),
                share,
                false,
                sent.clone(),
                stop.clone(),
            ));
        }
    });
    tokio::task::spawn_blocking(move || announce_and_wait(&addr.to_string()))
        .await
        .map_err(|e| e.to_string())
}

/// With `--codec`: 20 ms of 24 kHz PCM16 (silence: the codec's work does not depend on the
/// samples).
fn pcm_chunk() -> bytes::Bytes {
    bytes::Bytes::from_static(&[0; CHUNK_BYTES])
}

/// With `--codec`: a `response.output_audio.delta` frame with 20 ms of audio, in the API's
/// field order.
fn audio_delta_frame() -> Utf8Bytes {
    use base64::Engine as _;
    let delta = base64::engine::general_purpose::STANDARD.encode(pcm_chunk());
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_4711","response_id":"resp_12","item_id":"item_34","output_index":0,"content_index":0,"delta":"{delta}"}}"#
    )
    .into()
}

/// Reads one connection's frames and records their delays until the peer or `stop` ends it;
/// with `hops`, through a channel to another task, and with `codec`, decoding each as an audio
/// delta first.
async fn receive(
    mut read: tokio::net::tcp::OwnedReadHalf,
    received: Arc<AtomicU64>,
    delays: Arc<Histogram>,
    hops: bool,
    codec: bool,
) {
    let record = move |frame: &[u8]| {
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&frame[..8]);
        delays.record(now_us().saturating_sub(u64::from_le_bytes(stamp)));
        received.fetch_add(1, Ordering::Relaxed);
    };
    let mut frame = vec![0u8; FRAME];
    let mut wire = codec.then(|| (Wire::new(), audio_delta_frame(), Vec::new()));
    if !hops {
        while read.read_exact(&mut frame).await.is_ok() {
            if let Some((wire, delta, events)) = &mut wire {
                wire.decode(delta.clone(), events);
                events.clear();
            }
            record(&frame);
        }
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            record(&frame);
        }
    });
    while read.read_exact(&mut frame).await.is_ok() {
        if let Some((wire, delta, events)) = &mut wire {
            wire.decode(delta.clone(), events);
            events.clear();
        }
        if tx.send(frame.clone()).await.is_err() {
            return;
        }
    }
}

/// With `--hops`: the task that owns a connection's write half, fed by a channel; with
/// `codec`, it encodes an audio append for each frame first.
struct Relay(mpsc::Sender<Vec<u8>>);

impl Relay {
    fn new(mut write: OwnedWriteHalf, codec: bool) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        tokio::spawn(async move {
            let mut wire = codec.then(|| (Wire::new(), pcm_chunk()));
            while let Some(frame) = rx.recv().await {
                if let Some((wire, audio)) = &mut wire {
                    let audio = audio.clone();
                    wire.encode(ModelCommand::Audio {
                        audio,
                        commit: false,
                    });
                }
                if write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        Self(tx)
    }
}

/// Like [`pace`], through each connection's [`Relay`].
async fn pace_relays(group: Vec<Relay>, sent: Arc<AtomicU64>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHUNK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while !*stop.borrow() {
        tick.tick().await;
        for relay in &group {
            let mut frame = vec![0u8; FRAME];
            frame[..8].copy_from_slice(&now_us().to_le_bytes());
            if relay.0.send(frame).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    if args.codec {
        // The codec must do a session's work, not stop at an error: the frame is an audio delta.
        let mut events = Vec::new();
        Wire::new().decode(audio_delta_frame(), &mut events);
        let audio = events.iter().find_map(|e| match e {
            ModelEvent::Audio { data, .. } => Some(data.len()),
            _ => None,
        });
        if audio != Some(pcm_chunk().len()) {
            return Err(format!("--codec: the delta frame decoded to {events:?}"));
        }
    }
    let (mut child, addr) = spawn_server(&[
        "--serve",
        "--workers",
        &args.workers.to_string(),
        "--server-share",
        &args.server_share.to_string(),
    ])?;

    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Histogram::new());
    let (stop_tx, stop) = watch::channel(false);
    let mut writers = Vec::with_capacity(args.sessions);
    let mut readers = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (read, write) = stream.into_split();
        readers.push(tokio::spawn(receive(
            read,
            received.clone(),
            delays.clone(),
            args.hops,
            args.codec,
        )));
        writers.push(write);
    }
    let mut pacers = Vec::new();
    while !writers.is_empty() {
        let group = writers.split_off(writers.len().saturating_sub(PACER_GROUP));
        pacers.push(if args.hops {
            let relays = group
                .into_iter()
                .map(|w| Relay::new(w, args.codec))
                .collect();
            tokio::spawn(pace_relays(relays, sent.clone(), stop.clone()))
        } else {
            tokio::spawn(pace(group, 1.0, args.codec, sent.clone(), stop.clone()))
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    delays.reset();
    let (in0, out0) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    let cpu0 = process_cpu();
    let server0 = pid_cpu(child.id());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = process_cpu();
    let server1 = pid_cpu(child.id());
    let (in1, out1) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );

    let _ = stop_tx.send(true);
    for p in pacers {
        let _ = p.await;
    }
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }

    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let chunks = ((in1 - in0) + (out1 - out0)).max(1);
    let max = delays.max_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let quantile = |q| delays.quantile_ms(q).map(|v: f64| round(v.min(max), 2));
    println!(
        "{}",
        serde_json::json!({
            "sessions": args.sessions,
            "seconds": round(elapsed, 2),
            "client_cpu_seconds": round(user + sys, 3),
            "cpu_us_per_chunk": round((user + sys) * 1e6 / chunks as f64, 2),
            "cpu_ms_per_stream_second": round((user + sys) * 1e3 / (args.sessions as f64 * elapsed), 4),
            "delay_p50_ms": quantile(0.5),
            "delay_p99_ms": quantile(0.99),
            "delay_max_ms": round(max, 2),
            "client_user_cpu_seconds": round(user, 3),
            "client_sys_cpu_seconds": round(sys, 3),
            "chunks_in": in1 - in0,
            "chunks_out": out1 - out0,
            "server_cpu_seconds": server0.zip(server1).map(|(a, b)| round(b - a, 3)),
            "client_workers": args.workers,
            "hops": args.hops,
            "codec": args.codec,
            "server_share": args.server_share,
        })
    );
    Ok(())
}
