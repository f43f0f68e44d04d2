//! Unit tests of the Realtime state machine, without a socket.

use base64_simd::STANDARD as BASE64;
use serde_json::{Value, json};

use super::ConnectionState;
use crate::simulator::brain;
use crate::simulator::outgoing::Events;
use crate::simulator::speech;

fn run_to_end(state: &mut ConnectionState, out: &mut Vec<Value>) {
    let mut events = Events::default();
    while state.next_due().is_some() {
        state.advance(&mut events);
    }
    out.extend(events.values());
}

fn client(state: &mut ConnectionState, event: &Value, out: &mut Vec<Value>) {
    let mut events = Events::default();
    state.on_client_event(event, &mut events);
    out.extend(events.values());
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn text_turn_and_truncate_rules() {
    let (mut state, created) = ConnectionState::new("gpt-realtime", 0.0);
    assert_eq!(created["session"]["audio"]["output"]["voice"], "alloy");
    let mut out = Vec::new();
    client(
        &mut state,
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hello there"}]}}),
        &mut out,
    );
    client(&mut state, &json!({"type": "response.create"}), &mut out);
    run_to_end(&mut state, &mut out);
    let t = types(&out);
    assert_eq!(
        t[..4],
        [
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
            "response.output_item.added"
        ]
    );
    assert_eq!(t[t.len() - 2..], ["response.done", "rate_limits.updated"]);
    let done = &out[out.len() - 2]["response"];
    assert_eq!(done["status"], "completed");
    let transcript = done["output"][0]["content"][0]["transcript"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(transcript, brain::GREETING);
    let item_id = done["output"][0]["id"].as_str().unwrap().to_string();
    let audio_bytes: usize = out
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| {
            BASE64
                .decode_to_vec(e["delta"].as_str().unwrap())
                .unwrap()
                .len()
        })
        .sum();
    let total_ms = audio_bytes / 48;
    out.clear();
    client(
        &mut state,
        &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": total_ms + 1, "event_id": "e1"}),
        &mut out,
    );
    assert_eq!(out[0]["error"]["code"], "invalid_value");
    assert_eq!(out[0]["error"]["event_id"], "e1");
    client(
        &mut state,
        &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 1000}),
        &mut out,
    );
    assert_eq!(out[1]["type"], "conversation.item.truncated");
    client(
        &mut state,
        &json!({"type": "conversation.item.retrieve", "item_id": item_id}),
        &mut out,
    );
    // As on the real API, truncation deletes the transcript (not only the unheard words).
    assert_eq!(out[2]["item"]["content"][0]["transcript"], "");
    assert!(!transcript.is_empty());
}

#[test]
fn max_output_tokens_cuts_the_message() {
    let (mut state, _) = ConnectionState::new("gpt-realtime", 0.0);
    let mut out = Vec::new();
    for (modalities, limit) in [(json!(["text"]), 8), (json!(["audio"]), 30)] {
        client(
            &mut state,
            &json!({"type": "response.create", "response": {"output_modalities": modalities,
                "max_output_tokens": limit, "conversation": "none"}}),
            &mut out,
        );
        run_to_end(&mut state, &mut out);
        let done = &out
            .iter()
            .rev()
            .find(|e| e["type"] == "response.done")
            .unwrap()["response"];
        assert_eq!(done["status"], "incomplete");
        assert_eq!(done["status_details"]["reason"], "max_output_tokens");
        assert_eq!(done["output"][0]["status"], "incomplete");
        assert!(done["usage"]["output_tokens"].as_u64().unwrap() <= limit);
        let part = &done["output"][0]["content"][0];
        let said = part["text"]
            .as_str()
            .or(part["transcript"].as_str())
            .unwrap();
        assert!(
            said.starts_with("Hello!") && said.len() < brain::GREETING.len(),
            "{said}"
        );
    }
}

#[test]
fn vad_commits_encoded_speech() {
    let (mut state, _) = ConnectionState::new("gpt-realtime", 0.0);
    let mut out = Vec::new();
    client(
        &mut state,
        &json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"transcription": {"model": "whisper-1"}}}}}),
        &mut out,
    );
    let mut samples = vec![0i16; 4800];
    samples.extend(speech::encode_text("story please"));
    samples.extend(vec![0i16; 24_000]);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    for chunk in bytes.chunks(4800) {
        client(
            &mut state,
            &json!({"type": "input_audio_buffer.append", "audio": BASE64.encode_to_string(chunk)}),
            &mut out,
        );
    }
    let t = types(&out);
    let started = t
        .iter()
        .position(|t| *t == "input_audio_buffer.speech_started")
        .unwrap();
    assert_eq!(out[started]["audio_start_ms"], 0);
    let completed = out
        .iter()
        .find(|e| e["type"] == "conversation.item.input_audio_transcription.completed")
        .unwrap();
    assert_eq!(completed["transcript"], "story please");
    assert!(t.contains(&"response.created"));
    run_to_end(&mut state, &mut out);
    let done = out
        .iter()
        .rev()
        .find(|e| e["type"] == "response.done")
        .unwrap();
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        brain::STORY
    );
}
