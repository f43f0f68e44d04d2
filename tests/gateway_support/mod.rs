//! What the gateway tests share: a gateway on 127.0.0.1 in front of the simulator, the test
//! agent, test speech in the callers' formats, and captured log lines.
#![allow(dead_code)]

pub mod cdp;
pub mod twilio;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use realtime_agents::audio::StreamResampler;
use realtime_agents::audio::g711::G711Law;
use realtime_agents::gateway::{Gateway, GatewayBuilder, GatewayEvent};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::speech;
use realtime_agents::{FunctionTool, RealtimeAgent};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::task::JoinHandle;

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city.
    city: String,
}

/// The assistant of every test: a `get_weather(city)` tool.
pub fn agent() -> RealtimeAgent {
    let weather = FunctionTool::new(
        "get_weather",
        "Get the current weather in a city.",
        |args: WeatherArgs| async move {
            Ok::<_, String>(format!("Sunny and 22 degrees Celsius in {}", args.city))
        },
    );
    RealtimeAgent::new("Assistant")
        .instructions("You are a friendly voice assistant.")
        .tool(weather)
}

/// A gateway serving on 127.0.0.1, in front of the simulator at `sim_url`; stops on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub events: Arc<Mutex<Vec<GatewayEvent>>>,
    server: JoinHandle<()>,
}

impl TestGateway {
    pub async fn start(
        sim_url: &str,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> TestGateway {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let builder = Gateway::builder(agent())
            .model(OpenAIRealtimeWebSocketModel::builder().url(sim_url).build())
            .on_event(move |e| sink.lock().unwrap().push(e.clone()));
        let gateway = configure(builder).build().expect("gateway config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = gateway.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestGateway {
            addr,
            gateway,
            events,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn events(&self) -> Vec<GatewayEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Outcomes of the calls that ended, in order.
    pub fn outcomes(&self) -> Vec<&'static str> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                GatewayEvent::CallEnded { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    /// Waits until no call is active (or panics after `limit`).
    pub async fn wait_idle(&self, limit: Duration) {
        wait_for(limit, "all sessions to end", || {
            self.gateway.active_sessions() == 0
        })
        .await;
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Polls `ready` every 20 ms until it holds, or panics after `limit` naming `what`.
pub async fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Test speech the simulator transcribes to `text`, as μ-law at 8 kHz.
pub fn ulaw_speech(text: &str) -> Vec<u8> {
    let pcm: Vec<f32> = speech::encode_text(text)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut resampler = StreamResampler::new(speech::SAMPLE_RATE, 8_000).unwrap();
    let mut out = Vec::new();
    resampler.push(&pcm, &mut out);
    resampler.flush(&mut out);
    let samples: Vec<i16> = out
        .iter()
        .map(|&s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect();
    G711Law::Ulaw.encode_vec(&samples)
}

/// Every log line written while the test binary runs (a global subscriber, installed once).
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info,realtime_agents=debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

/// The captured log as text.
pub fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain HTTP/1.1 request (no HTTP client dependency): the status and the body.
pub async fn http(method: &str, url: &str, form: &str) -> (u16, String) {
    http_with(method, url, form, &[]).await
}

/// [`http`] with extra request headers.
pub async fn http_with(
    method: &str,
    url: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         {extra}Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A part of a fake-microphone recording.
pub enum Part {
    Silence(u32),
    Say(&'static str),
}

/// Writes test speech and silences as a 48 kHz mono 16-bit WAV (Chromium's fake microphone
/// converts it to the device rate) into a fresh temporary file.
pub fn speech_wav(name: &str, parts: &[Part]) -> std::path::PathBuf {
    const RATE: u32 = 48_000;
    let mut pcm24 = Vec::new();
    for part in parts {
        match part {
            Part::Silence(ms) => pcm24.extend(std::iter::repeat_n(0i16, (*ms * 24) as usize)),
            Part::Say(text) => pcm24.extend(speech::encode_text(text)),
        }
    }
    let input: Vec<f32> = pcm24.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut resampler = StreamResampler::new(speech::SAMPLE_RATE, RATE).unwrap();
    let mut out = Vec::new();
    resampler.push(&input, &mut out);
    resampler.flush(&mut out);
    let path = std::env::temp_dir().join(format!("gateway-{name}-{}.wav", std::process::id()));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(&path, spec).unwrap();
    for s in out {
        wav.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .unwrap();
    }
    wav.finalize().unwrap();
    path
}
