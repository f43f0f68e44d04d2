//! Output guardrails over loopback WebSockets: debounced and final checks, what a trip does on
//! the wire, feedback, failures, and audio held back until the text passed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use realtime_agents::audio::AudioFormat;
use realtime_agents::{
    Error, GuardrailOutput, OutputGuardrail, PlaybackTracker, RealtimeAgent, RealtimeRunConfig,
    RealtimeSession, RealtimeSessionEvent as E,
};
use serde_json::Value;
use support::script::{spoken_response, start};
use support::{Responder, ScriptedServer, ev, until};

/// First response: `words`, each a transcript delta then 20 ms of audio, 30 ms apart (so the
/// guardrails can act while it streams). Later responses: "Sorry." at once.
fn paced_script(words: &'static [&'static str]) -> impl Fn(&Value, &Responder) {
    let n = AtomicUsize::new(0);
    let users = AtomicUsize::new(0);
    move |e, out| {
        let user = users.load(Ordering::SeqCst);
        if let Some(echo) = ev::echo_user_message(e, &format!("u{user}")) {
            users.fetch_add(1, Ordering::SeqCst);
            out.send(echo);
        }
        if e["type"] != "response.create" {
            return;
        }
        if n.fetch_add(1, Ordering::SeqCst) > 0 {
            return spoken_response(out, "r2", "a2", &["Sorry."]);
        }
        let out = out.clone();
        tokio::spawn(async move {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
            ]);
            for w in words {
                out.send_all([
                    ev::transcript_delta("r1", "a1", w),
                    ev::audio_delta("r1", "a1", 20),
                ]);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            out.send_all([
                ev::audio_done("r1", "a1"),
                ev::response_done("r1", "completed"),
            ]);
        });
    }
}

const SECRET_STORY: &[&str] = &[
    "The ",
    "code ",
    "is ",
    "secret-42 ",
    "and ",
    "more ",
    "words ",
    "follow.",
];

fn no_secrets(runs: Arc<AtomicUsize>) -> OutputGuardrail {
    OutputGuardrail::new("no_secrets", move |text: String| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            if text.contains("secret") {
                GuardrailOutput::trip("mentions a secret")
            } else {
                GuardrailOutput::pass()
            }
        }
    })
}

/// Playback is always 10 ms in.
struct TenMs;
impl PlaybackTracker for TenMs {
    fn on_audio_delivered(&self, _: &str, _: u32, _: usize, _: AudioFormat) {}
    fn played_ms(&self, _: &str, _: u32) -> Option<u64> {
        Some(10)
    }
    fn on_interrupted(&self) {}
}

fn audio_of(events: &[E], response: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, E::Audio { response_id, .. } if response_id == response))
        .count()
}

async fn sorry(session: &mut RealtimeSession) -> Vec<E> {
    until(
        session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Sorry."),
    )
    .await
}

#[tokio::test]
async fn a_trip_mid_stream_cancels_truncates_stops_audio_and_tells_the_model() {
    let server = ScriptedServer::start(paced_script(SECRET_STORY)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_secrets(runs.clone()));
    let config = RealtimeRunConfig::new()
        .guardrail_debounce_chars(5)
        .playback_tracker(Arc::new(TenMs));
    let mut session = start(&server, agent, config).await;
    session.send_message("Tell me the code").await.unwrap();
    let events = sorry(&mut session).await;

    let tripped = events
        .iter()
        .position(|e| {
            matches!(e, E::GuardrailTripped { response_id, results, text }
            if response_id == "r1" && text.contains("secret-42") && results[0].name == "no_secrets"
               && results[0].output.tripwire_triggered)
        })
        .expect("tripped");
    let interrupted = events
        .iter()
        .position(|e| matches!(e, E::AudioInterrupted { played_ms: 10, .. }))
        .expect("playback stopped");
    assert!(tripped < interrupted);
    // No audio of the blocked response after the trip, and none of its later words.
    assert_eq!(audio_of(&events[tripped..], "r1"), 0);
    assert!(!support::assistant_text(&events).contains("follow."));
    let cancel = server.wait_for("response.cancel", 1).await.remove(0);
    assert_eq!(cancel["response_id"], "r1");
    let truncate = server
        .wait_for("conversation.item.truncate", 1)
        .await
        .remove(0);
    assert_eq!(truncate["item_id"], "a1");
    assert_eq!(truncate["audio_end_ms"], 10);
    let feedback = server.received_of("conversation.item.create").remove(1);
    let text = feedback["item"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("no_secrets (mentions a secret)") && text.contains("Do not repeat it"),
        "{text}"
    );
    assert_eq!(server.received_of("response.create").len(), 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, E::GuardrailTripped { .. }))
            .count(),
        1,
        "once per response"
    );
}

#[tokio::test]
async fn the_final_check_catches_a_response_shorter_than_the_debounce() {
    let server = ScriptedServer::start(paced_script(&["secret!"])).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_secrets(runs.clone()));
    let config = RealtimeRunConfig::new().guardrail_debounce_chars(1000);
    let mut session = start(&server, agent, config).await;
    session.send_message("Hi").await.unwrap();
    until(&mut session, |e| matches!(e, E::GuardrailTripped { .. })).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one final run");
    sorry(&mut session).await;
}

#[tokio::test]
async fn agent_and_run_guardrails_each_run_once_and_feedback_is_configurable() {
    let server = ScriptedServer::start(paced_script(SECRET_STORY)).await;
    let shared_runs = Arc::new(AtomicUsize::new(0));
    let other_runs = Arc::new(AtomicUsize::new(0));
    let shared = no_secrets(shared_runs.clone());
    let other = {
        let runs = other_runs.clone();
        OutputGuardrail::new("length", move |_text: String| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { GuardrailOutput::pass() }
        })
    };
    let agent = RealtimeAgent::new("Assistant").output_guardrail(shared.clone());
    let config = RealtimeRunConfig::new()
        .output_guardrail(shared)
        .output_guardrail(other)
        .guardrail_debounce_chars(0)
        .guardrail_feedback(|results| {
            let names: Vec<&str> = results
                .iter()
                .filter(|r| r.output.tripwire_triggered)
                .map(|r| r.name.as_str())
                .collect();
            format!("BLOCKED:{}", names.join(","))
        });
    let mut session = start(&server, agent, config).await;
    session.send_message("Tell me").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::GuardrailTripped { .. })).await;
    let Some(E::GuardrailTripped { results, .. }) = events.last() else {
        unreachable!()
    };
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["no_secrets", "length"]);
    // Debounce 0: only the final check, each guardrail once, even though listed twice.
    assert_eq!(shared_runs.load(Ordering::SeqCst), 1);
    assert_eq!(other_runs.load(Ordering::SeqCst), 1);
    sorry(&mut session).await;
    let feedback = server.received_of("conversation.item.create").remove(1);
    assert_eq!(feedback["item"]["content"][0]["text"], "BLOCKED:no_secrets");
}

#[tokio::test]
async fn a_failing_guardrail_is_reported_and_the_session_goes_on() {
    let server = ScriptedServer::start(paced_script(&["Hello."])).await;
    let broken = OutputGuardrail::new("broken", |_text: String| async {
        panic!("guardrail bug");
        #[allow(unreachable_code)]
        GuardrailOutput::pass()
    });
    let agent = RealtimeAgent::new("Assistant").output_guardrail(broken);
    let mut session = start(&server, agent, RealtimeRunConfig::new()).await;
    session.send_message("Hi").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::Error { .. })).await;
    assert!(matches!(
        events.last(),
        Some(E::Error { error: Error::Guardrail { name, message } }) if name == "broken" && message.contains("panicked")
    ));
    session.send_message("Still there?").await.unwrap();
    sorry(&mut session).await;
}

#[tokio::test]
async fn held_audio_of_a_blocked_response_is_never_delivered() {
    let server = ScriptedServer::start(paced_script(SECRET_STORY)).await;
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_secrets(Arc::default()));
    let config = RealtimeRunConfig::new()
        .guardrail_debounce_chars(1)
        .hold_audio_for_guardrails(true);
    let mut session = start(&server, agent, config).await;
    session.send_message("Tell me the code").await.unwrap();
    let events = sorry(&mut session).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::GuardrailTripped { .. }))
    );
    // "The code is" passed, so its audio may play; nothing from "secret-42" on.
    let delivered = audio_of(&events, "r1");
    assert!(delivered <= 3, "{delivered} chunks delivered");
    let tripped = events
        .iter()
        .position(|e| matches!(e, E::GuardrailTripped { .. }))
        .unwrap();
    assert_eq!(audio_of(&events[tripped..], "r1"), 0);
    assert!(server.wait_for("response.cancel", 1).await.len() == 1);

    // Without holding, the same response's blocked words were already playing.
    let server = ScriptedServer::start(paced_script(SECRET_STORY)).await;
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_secrets(Arc::default()));
    let config = RealtimeRunConfig::new().guardrail_debounce_chars(1);
    let mut session = start(&server, agent, config).await;
    session.send_message("Tell me the code").await.unwrap();
    let events = sorry(&mut session).await;
    assert!(
        audio_of(&events, "r1") >= 4,
        "the fourth chunk says the secret"
    );
}

#[tokio::test]
async fn held_audio_of_a_passing_response_is_all_delivered_in_order() {
    const CLEAN: &[&str] = &["All ", "good ", "here ", "today."];
    let server = ScriptedServer::start(paced_script(CLEAN)).await;
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_secrets(Arc::default()));
    let config = RealtimeRunConfig::new()
        .guardrail_debounce_chars(5)
        .hold_audio_for_guardrails(true);
    let mut session = start(&server, agent, config).await;
    session.send_message("How is it?").await.unwrap();
    let (mut ended, mut audio_ended) = (false, false);
    let events = until(&mut session, |e| {
        ended |= matches!(e, E::AgentEnd { .. });
        audio_ended |= matches!(e, E::AudioEnd { .. });
        ended && audio_ended
    })
    .await;
    assert_eq!(audio_of(&events, "r1"), CLEAN.len());
    let last_audio = events
        .iter()
        .rposition(|e| matches!(e, E::Audio { .. }))
        .unwrap();
    let end = events
        .iter()
        .position(|e| matches!(e, E::AudioEnd { .. }))
        .unwrap();
    assert!(last_audio < end, "the end of the audio comes after it");
    // Audio never overtakes the text that produced it.
    let first_audio = events
        .iter()
        .position(|e| matches!(e, E::Audio { .. }))
        .unwrap();
    let first_text = events
        .iter()
        .position(|e| matches!(e, E::TranscriptDelta { .. }))
        .unwrap();
    assert!(first_text < first_audio);
}
