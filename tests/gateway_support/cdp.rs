//! Headless Chromium driven through the DevTools protocol over a WebSocket (tokio-tungstenite,
//! no browser-automation crate): launch with a fake microphone fed from a WAV file, navigate,
//! evaluate JavaScript, collect console errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium can run here. Without it, outside CI, the browser tests skip loudly; in
/// CI (`CI` set) they fail.
pub fn chromium_or_skip(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{CHROMIUM} is missing in CI: .ci/run installs it (apt-get install chromium)");
    }
    eprintln!(
        "\n*** SKIPPED {test}: {CHROMIUM} is not installed (apt-get install -y chromium). \
         CI runs this test. ***\n"
    );
    false
}

pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    profile: PathBuf,
    /// Console errors and uncaught exceptions of the page.
    pub console_errors: Vec<String>,
}

impl Browser {
    /// Starts headless Chromium with `wav` as the microphone (played once) and opens `url`.
    pub async fn launch(url: &str, wav: &Path) -> Browser {
        static N: AtomicU64 = AtomicU64::new(0);
        let profile = std::env::temp_dir().join(format!(
            "gateway-chromium-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!(
                "--use-file-for-fake-audio-capture={}%noloop",
                wav.display()
            ))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        // Chromium prints the DevTools address on stderr; keep draining it afterwards.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium did not start within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(&endpoint)
            .await
            .expect("connect to DevTools");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            profile,
            console_errors: Vec::new(),
        };
        let targets = browser.call("Target.getTargets", json!({})).await;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .expect("a page target")["targetId"]
            .clone();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": page, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Page.enable", json!({})).await;
        browser.call("Page.navigate", json!({"url": url})).await;
        browser
    }

    /// Sends a command and waits for its result (events meanwhile are scanned for errors).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no DevTools answer to {method}"))
                .expect("DevTools closed")
                .expect("DevTools error");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(error) = v.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return v["result"].clone();
            }
            match v["method"].as_str() {
                Some("Runtime.exceptionThrown") => self
                    .console_errors
                    .push(v["params"]["exceptionDetails"].to_string()),
                Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                    self.console_errors.push(v["params"]["args"].to_string())
                }
                _ => {}
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` every 100 ms until it is truthy; returns `window.__voiceTest`
    /// then, or panics after `limit` with the page state.
    pub async fn wait_for(&mut self, expression: &str, limit: Duration, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ok = self.eval(&format!("!!({expression})")).await;
            if ok == json!(true) {
                return self.state().await;
            }
            if tokio::time::Instant::now() > deadline {
                let state = self.state().await;
                panic!(
                    "timed out after {limit:?} waiting for {what}\npage state: {state:#}\nconsole errors: {:?}",
                    self.console_errors
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's test state, `window.__voiceTest`.
    pub async fn state(&mut self) -> Value {
        self.eval("JSON.parse(JSON.stringify(window.__voiceTest || null))")
            .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
