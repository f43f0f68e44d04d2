//! Draining: the trigger `voice_server` wires to SIGTERM (`Gateway::serve`'s shutdown future)
//! during 20 live phone calls.

mod gateway_support;

use std::time::Duration;

use gateway_support::twilio::TwilioCall;
use gateway_support::{agent, http, ulaw_speech, wait_for};
use realtime_agents::gateway::{DrainReport, Gateway};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite;

const CALLS: usize = 20;

struct Served {
    base: String,
    gateway: Gateway,
    sigterm: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<DrainReport>>,
}

async fn serve(sim: &Simulator, drain_timeout: Duration) -> Served {
    let gateway = Gateway::builder(agent())
        .model(
            OpenAIRealtimeWebSocketModel::builder()
                .url(sim.url())
                .build(),
        )
        .max_sessions(CALLS + 5)
        .drain_timeout(drain_timeout)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (sigterm, signal) = oneshot::channel::<()>();
    let serving = gateway.clone();
    let done = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = signal.await;
            })
            .await
    });
    Served {
        base,
        gateway,
        sigterm: Some(sigterm),
        done,
    }
}

async fn connect_calls(s: &Served) -> Vec<TwilioCall> {
    let mut calls = Vec::new();
    for i in 0..CALLS {
        calls.push(
            TwilioCall::connect(&format!("ws://{}/twilio/stream", s.base), &format!("CA{i}")).await,
        );
    }
    wait_for(Duration::from_secs(20), "20 live sessions", || {
        s.gateway.active_sessions() == CALLS
    })
    .await;
    calls
}

/// A new call during the drain: the upgrade is refused with 503 and the reason.
async fn new_call_is_refused(base: &str) {
    let error = tokio_tungstenite::connect_async(format!("ws://{base}/twilio/stream"))
        .await
        .expect_err("a new call must be refused while draining");
    let tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error}");
    };
    assert_eq!(response.status(), 503);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.starts_with("draining"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_at_once_refuses_new_calls_and_lets_live_calls_finish() {
    let sim = Simulator::builder()
        .speed(4.0)
        .record_client_events(false)
        .start()
        .await
        .unwrap();
    let mut s = serve(&sim, Duration::from_secs(60)).await;
    assert_eq!(
        http("GET", &format!("http://{}/readyz", s.base), "").await,
        (200, "ready".into())
    );
    let calls = connect_calls(&s).await;

    s.sigterm.take().unwrap().send(()).unwrap();
    // Readiness fails at once; liveness does not.
    wait_for(Duration::from_millis(200), "draining", || {
        s.gateway.is_draining()
    })
    .await;
    assert_eq!(
        http("GET", &format!("http://{}/readyz", s.base), "").await,
        (503, "draining".into())
    );
    assert_eq!(
        http("GET", &format!("http://{}/healthz", s.base), "").await,
        (200, "ok".into())
    );
    new_call_is_refused(&s.base).await;
    let (status, _) = http(
        "POST",
        &format!("http://{}/twilio/voice", s.base),
        "CallSid=CA99",
    )
    .await;
    assert_eq!(status, 503, "the webhook sends new calls elsewhere");

    // The live calls go on: each caller asks something and hears the answer...
    for call in &calls {
        call.say(ulaw_speech("Hello!"));
    }
    for call in &calls {
        wait_for(
            Duration::from_secs(30),
            "an answer during the drain",
            || call.with_log(|l| l.media_frames() >= 50),
        )
        .await;
    }
    assert_eq!(s.gateway.active_sessions(), CALLS);
    // ...then hangs up; the drain ends when the last one has.
    for call in calls {
        call.stop();
        call.finished(Duration::from_secs(10)).await;
    }
    let report = tokio::time::timeout(Duration::from_secs(10), s.done)
        .await
        .expect("serve returns once the calls are over")
        .unwrap()
        .unwrap();
    assert_eq!(report.live_at_start, CALLS);
    assert_eq!(report.closed_at_deadline, 0);
    assert_eq!(s.gateway.active_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_still_live_at_the_drain_deadline_are_closed_cleanly() {
    let sim = Simulator::builder()
        .record_client_events(false)
        .start()
        .await
        .unwrap();
    let mut s = serve(&sim, Duration::from_millis(800)).await;
    let calls = connect_calls(&s).await;
    s.sigterm.take().unwrap().send(()).unwrap();
    new_call_is_refused(&s.base).await;
    let report = tokio::time::timeout(Duration::from_secs(15), s.done)
        .await
        .expect("serve returns after the deadline")
        .unwrap()
        .unwrap();
    assert_eq!(report.live_at_start, CALLS);
    assert_eq!(report.closed_at_deadline, CALLS);
    assert_eq!(s.gateway.active_sessions(), 0);
    for call in calls {
        let log_closed = call.log.clone();
        call.finished(Duration::from_secs(5)).await;
        // A close frame with 1001 (going away): Twilio then runs the TwiML after <Connect>.
        assert_eq!(log_closed.lock().unwrap().closed, Some(Some(1001)));
    }
}
