//! Unit tests of the Live state machine, without a socket.

use base64_simd::STANDARD as BASE64;
use serde_json::{Value, json};

use super::LiveState;
use crate::simulator::outgoing::Events;
use crate::simulator::speech;

fn state() -> LiveState {
    let (mut state, _) = LiveState::open(&crate::simulator::Shared::for_tests());
    state.speed = 0.0;
    state
}

fn client(state: &mut LiveState, event: Value) -> Vec<Value> {
    let mut events = Events::default();
    state.on_client_event(&event, &mut events);
    events.values()
}

fn run_to_end(state: &mut LiveState) -> Vec<Value> {
    let mut events = Events::default();
    while state.speaking_due().is_some() {
        state.speak_step(&mut events);
    }
    events.values()
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

fn transcript(events: &[Value], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .filter_map(|e| e["delta"].as_str())
        .collect()
}

fn start(state: &mut LiveState, session: Value) -> Vec<Value> {
    client(state, json!({"type": "session.start", "session": session}))
}

fn speak(state: &mut LiveState, text: &str) -> Vec<Value> {
    let mut samples = speech::encode_text(text);
    samples.extend(std::iter::repeat_n(0i16, 24_000));
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4800) {
        out.extend(client(
            state,
            json!({"type": "session.input_audio.append", "audio": BASE64.encode_to_string(chunk)}),
        ));
    }
    out
}

#[test]
fn the_client_speaks_first_and_the_config_is_strict() {
    let mut state = state();
    let early = client(&mut state, json!({"type": "session.input_audio.mute"}));
    assert_eq!(early[0]["error"]["code"], "session_not_started");
    let bad = start(&mut state, json!({"model": "gpt-live-1", "voice": "marin"}));
    assert_eq!(bad[0]["error"]["code"], "unknown_parameter");
    assert_eq!(bad[0]["error"]["param"], "session.voice");
    let no_model = start(&mut state, json!({}));
    assert_eq!(no_model[0]["error"]["code"], "missing_required_parameter");
    let started = start(&mut state, json!({"model": "gpt-live-1"}));
    assert_eq!(types(&started), ["session.started"]);
    let session = &started[0]["session"];
    assert_eq!(session["status"], "active");
    assert_eq!(session["delegation"]["type"], "client");
    assert_eq!(session["audio"]["format"]["rate"], 24000);
    let unknown = client(
        &mut state,
        json!({"type": "input_audio_buffer.commit", "event_id": "c1"}),
    );
    assert_eq!(unknown[0]["error"]["client_event_id"], "c1");
    assert!(
        unknown[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session.close")
    );
}

#[test]
fn a_spoken_turn_is_transcribed_and_answered_then_the_track_falls_silent() {
    let mut state = state();
    start(&mut state, json!({"model": "gpt-live-1"}));
    let heard = speak(&mut state, "hello there");
    assert_eq!(
        transcript(&heard, "session.input_transcript.delta"),
        "hello there"
    );
    let said = run_to_end(&mut state);
    assert_eq!(
        transcript(&said, "session.output_transcript.delta"),
        "Hello! I'm a simulated assistant. How can I help you today?"
    );
    let silent = said.iter().rev().skip(1).take(10).all(|e| {
        e["type"] == "session.output_audio.delta"
            && e["delta"].as_str().unwrap().starts_with("AAAA")
    });
    assert!(silent, "a second of silence ends the utterance");
    assert_eq!(said.last().unwrap()["type"], "session.usage.updated");
}

#[test]
fn client_delegation_is_answered_with_commentary() {
    let mut state = state();
    start(
        &mut state,
        json!({"model": "gpt-live-1", "instructions": format!("Be nice.\n\n{} get_weather", crate::model::live::DELEGATE_LINE)}),
    );
    let heard = speak(&mut state, "What's the weather in Paris?");
    let created = heard
        .iter()
        .find(|e| e["type"] == "session.delegation.created")
        .expect("delegated");
    assert_eq!(created["delegation"]["target"], "client");
    let id = created["delegation"]["id"].as_str().unwrap().to_owned();
    let ack = run_to_end(&mut state);
    assert_eq!(
        transcript(&ack, "session.output_transcript.delta"),
        "Okay, let me check."
    );
    let answer = client(
        &mut state,
        json!({"type": "session.commentary.append", "content": "Sunny in Paris", "delegation_id": id}),
    );
    assert_eq!(answer[0]["type"], "session.commentary.appended");
    let said = run_to_end(&mut state);
    assert_eq!(
        transcript(&said, "session.output_transcript.delta"),
        "Here is what I found: Sunny in Paris."
    );
}

#[test]
fn responses_delegation_calls_functions_and_continues() {
    let mut state = state();
    start(
        &mut state,
        json!({"model": "gpt-live-1", "delegation": {"type": "responses", "responses": {
            "model": "gpt-5.4-mini", "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}}}),
    );
    let heard = speak(&mut state, "What's the weather in Paris?");
    let call = heard
        .iter()
        .find(|e| e["event"]["type"] == "response.output_item.done")
        .expect("a call");
    let item = &call["event"]["item"];
    assert_eq!(item["name"], "get_weather");
    assert_eq!(item["arguments"], r#"{"city":"Paris"}"#);
    run_to_end(&mut state);
    let early = client(&mut state, json!({"type": "response.create"}));
    assert!(
        early[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("incomplete")
    );
    client(
        &mut state,
        json!({"type": "response.item.create", "item": {"type": "function_call_output",
            "call_id": item["call_id"], "output": "Sunny"}}),
    );
    let continued = client(&mut state, json!({"type": "response.create"}));
    assert_eq!(continued.len(), 2);
    let said = run_to_end(&mut state);
    assert_eq!(
        transcript(&said, "session.output_transcript.delta"),
        "Here is what I found: Sunny."
    );
    let update = client(
        &mut state,
        json!({"type": "session.update", "session": {"delegation": {"type": "client"}}}),
    );
    assert_eq!(update[0]["error"]["code"], "immutable_field_update");
}

#[test]
fn typed_text_then_commentary_makes_it_speak_and_close_ends_the_session() {
    let mut state = state();
    start(&mut state, json!({"model": "gpt-live-1"}));
    let acks = client(
        &mut state,
        json!({"type": "session.thinking.append", "content": "user: Tell me a joke", "delegation_id": null}),
    );
    assert_eq!(acks[0]["type"], "session.thinking.appended");
    assert!(run_to_end(&mut state).is_empty(), "thinking is silent");
    client(
        &mut state,
        json!({"type": "session.commentary.append", "content": "Respond to the user now.", "delegation_id": null}),
    );
    let said = run_to_end(&mut state);
    assert_eq!(
        transcript(&said, "session.output_transcript.delta"),
        "You said: Tell me a joke."
    );
    let missing = client(
        &mut state,
        json!({"type": "session.thinking.append", "content": "x"}),
    );
    assert_eq!(missing[0]["error"]["param"], "delegation_id");
    let closed = client(&mut state, json!({"type": "session.close"}));
    assert_eq!(closed[0]["reason"], "close_requested");
    assert!(state.closed);
}
