//! Server event tests: one realistic sample per GA server event type (checked against the
//! official `openai` Python models), decoded, inspected and re-encoded.

use serde_json::json;

use super::*;
use crate::audio::AudioFormat;
use crate::protocol::test_support::{dump, value};
use crate::protocol::{
    ContentPart, Item, ItemStatus, MaxOutputTokens, Modality, Role, SessionKind, ToolChoice,
    ToolDefinition, TurnDetection, Voice,
};

/// `(name, json)`; the name starts with the event type (extra samples get a suffix).
const SAMPLES: &[(&str, &str)] = &[
    (
        "session.created",
        r#"{"type":"session.created","event_id":"event_C9G5RJeJ2gF77mV7f2B1j","session":{
            "type":"realtime","object":"realtime.session","id":"sess_C9G5QPteg4UIbotdKLoYQ",
            "model":"gpt-realtime-2025-08-28","output_modalities":["audio"],
            "instructions":"Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.",
            "tools":[],"tool_choice":"auto","max_output_tokens":"inf","truncation":"auto",
            "expires_at":1756324625,
            "audio":{
              "input":{"format":{"type":"audio/pcm","rate":24000},"transcription":null,"noise_reduction":null,
                       "turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,
                                         "silence_duration_ms":200,"create_response":true,"interrupt_response":true}},
              "output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin","speed":1.0}}}}"#,
    ),
    (
        "session.updated",
        r#"{"type":"session.updated","event_id":"event_C9G8mqI3IucaojlVKE8Cs","session":{
            "type":"realtime","object":"realtime.session","id":"sess_C9G8l3zp50uFv4qgxfJ8o",
            "model":"gpt-realtime-2025-08-28","output_modalities":["audio"],
            "instructions":"You are a helpful travel agent.","max_output_tokens":4096,
            "tools":[{"type":"function","name":"get_weather","description":"Current weather for a city.",
                      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
                     {"type":"mcp","server_label":"deepwiki","server_url":"https://mcp.deepwiki.com/mcp","require_approval":"never"}],
            "tool_choice":{"type":"function","name":"get_weather"},"expires_at":1756324832,
            "audio":{
              "input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"gpt-4o-mini-transcribe","language":"en"},
                       "noise_reduction":{"type":"far_field"},"turn_detection":null},
              "output":{"format":{"type":"audio/pcmu"},"voice":"ash","speed":1.1}}}}"#,
    ),
    (
        "error",
        r#"{"type":"error","event_id":"event_C9G8mIpqRdl5iaUg9p2Ua","error":{
            "type":"invalid_request_error","code":"conversation_already_has_active_response",
            "message":"Conversation already has an active response in progress: resp_C9G8m4V9nHd6ySLsZG4Fl.",
            "param":"response","event_id":"evt_rc_7"}}"#,
    ),
    (
        "rate_limits.updated",
        r#"{"type":"rate_limits.updated","event_id":"event_C9G8mqeyCjZ9bN3uSm5bJ","rate_limits":[
            {"name":"requests","limit":1000,"remaining":999,"reset_seconds":0.06},
            {"name":"tokens","limit":50000,"remaining":49950,"reset_seconds":0.12}]}"#,
    ),
    (
        "conversation.created",
        r#"{"type":"conversation.created","event_id":"event_9101","conversation":{
            "id":"conv_001","object":"realtime.conversation"}}"#,
    ),
    (
        "conversation.item.added",
        r#"{"type":"conversation.item.added","event_id":"event_C9G8pjSJCfRNEhMEnYAVy",
            "previous_item_id":"item_C9G8pGVKYnaZu8PH5YQ9O","item":{
              "id":"item_C9G8pGVKYnaZu8PH5YQ9P","object":"realtime.item","type":"message",
              "status":"completed","role":"user","content":[{"type":"input_audio"}]}}"#,
    ),
    (
        "conversation.item.added.mcp_list_tools",
        r#"{"type":"conversation.item.added","event_id":"event_mcp_1","item":{
            "type":"mcp_list_tools","id":"mcpl_001","server_label":"deepwiki",
            "tools":[{"name":"ask_question","description":"Ask about a repository.","input_schema":{"type":"object"}}]}}"#,
    ),
    (
        "conversation.item.created",
        r#"{"type":"conversation.item.created","event_id":"event_1920","previous_item_id":"msg_002",
            "item":{"id":"msg_003","object":"realtime.item","type":"message","status":"completed",
                    "role":"user","content":[{"type":"input_text","text":"Hello, how are you?"}]}}"#,
    ),
    (
        "conversation.item.done",
        r#"{"type":"conversation.item.done","event_id":"event_CCXLgMZPo3qioWCeQa4WH",
            "previous_item_id":"item_CCXLecNJVIVR2HUy3ABLj","item":{
              "id":"item_CCXLfxmM5sXVJVz4mCa2S","object":"realtime.item","type":"message",
              "status":"completed","role":"assistant",
              "content":[{"type":"output_audio","transcript":"Oh, I can hear you loud and clear! Sounds like we're connected just fine."}]}}"#,
    ),
    (
        "conversation.item.retrieved",
        r#"{"type":"conversation.item.retrieved","event_id":"event_CCXGSizgEppa2d4XbKA7K","item":{
            "id":"item_CCXGRxbY0n6WE4EszhF5w","object":"realtime.item","type":"message",
            "status":"completed","role":"assistant",
            "content":[{"type":"output_audio","transcript":"Yes, I can hear you loud and clear.","audio":"AAAAAP//AQD+/wIA"}]}}"#,
    ),
    (
        "conversation.item.deleted",
        r#"{"type":"conversation.item.deleted","event_id":"event_2728","item_id":"item_003"}"#,
    ),
    (
        "conversation.item.truncated",
        r#"{"type":"conversation.item.truncated","event_id":"event_2526","item_id":"item_002",
            "content_index":0,"audio_end_ms":1500}"#,
    ),
    (
        "conversation.item.input_audio_transcription.delta",
        r#"{"type":"conversation.item.input_audio_transcription.delta","event_id":"event_CCXGRxsAimPAs8kS2Wc7Z",
            "item_id":"item_CCXGQ4e1ht4cOraEYcuR2","content_index":0,"delta":"Hey,"}"#,
    ),
    (
        "conversation.item.input_audio_transcription.completed",
        r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_CCXGRvtUVrax5SJAnNOWZ",
            "item_id":"item_CCXGQ4e1ht4cOraEYcuR2","content_index":0,"transcript":"Hey, can you hear me?",
            "usage":{"type":"tokens","total_tokens":22,"input_tokens":13,"output_tokens":9,
                     "input_token_details":{"text_tokens":0,"audio_tokens":13}},
            "logprobs":[{"token":"Hey","logprob":-0.0021,"bytes":[72,101,121]}],
            "languages":[{"code":"en"}]}"#,
    ),
    (
        "conversation.item.input_audio_transcription.failed",
        r#"{"type":"conversation.item.input_audio_transcription.failed","event_id":"event_2324",
            "item_id":"msg_003","content_index":0,"error":{"type":"transcription_error",
            "code":"audio_unintelligible","message":"The audio could not be transcribed.","param":"audio"}}"#,
    ),
    (
        "conversation.item.input_audio_transcription.segment",
        r#"{"type":"conversation.item.input_audio_transcription.segment","event_id":"event_6501",
            "item_id":"msg_011","content_index":0,"id":"seg_0001","text":"hello","speaker":"A",
            "start":0.0,"end":0.4}"#,
    ),
    (
        "input_audio_buffer.speech_started",
        r#"{"type":"input_audio_buffer.speech_started","event_id":"event_1516","audio_start_ms":1000,
            "item_id":"msg_003"}"#,
    ),
    (
        "input_audio_buffer.speech_stopped",
        r#"{"type":"input_audio_buffer.speech_stopped","event_id":"event_1718","audio_end_ms":2000,
            "item_id":"msg_003"}"#,
    ),
    (
        "input_audio_buffer.committed",
        r#"{"type":"input_audio_buffer.committed","event_id":"event_1121","previous_item_id":"msg_001",
            "item_id":"msg_002"}"#,
    ),
    (
        "input_audio_buffer.committed.first_item",
        r#"{"type":"input_audio_buffer.committed","event_id":"event_1122","item_id":"msg_001"}"#,
    ),
    (
        "input_audio_buffer.cleared",
        r#"{"type":"input_audio_buffer.cleared","event_id":"event_1314"}"#,
    ),
    (
        "input_audio_buffer.timeout_triggered",
        r#"{"type":"input_audio_buffer.timeout_triggered","event_id":"event_CEKKrf1KTGvemCPyiJTJ2",
            "audio_start_ms":13216,"audio_end_ms":19232,"item_id":"item_CEKKrWH0GiwN0ET97NUZc"}"#,
    ),
    (
        "input_audio_buffer.dtmf_event_received",
        r#"{"type":"input_audio_buffer.dtmf_event_received","event":"7","received_at":1763605109}"#,
    ),
    (
        "output_audio_buffer.started",
        r#"{"type":"output_audio_buffer.started","event_id":"event_abc123","response_id":"resp_abc123"}"#,
    ),
    (
        "output_audio_buffer.stopped",
        r#"{"type":"output_audio_buffer.stopped","event_id":"event_abc124","response_id":"resp_abc123"}"#,
    ),
    (
        "output_audio_buffer.cleared",
        r#"{"type":"output_audio_buffer.cleared","event_id":"event_abc125","response_id":"resp_abc123"}"#,
    ),
    (
        "response.created",
        r#"{"type":"response.created","event_id":"event_C9G8pqbTEddBSIxbBN6Os","response":{
            "object":"realtime.response","id":"resp_C9G8p7IH2WxLbkgPNouYL","status":"in_progress",
            "output":[],"conversation_id":"conv_C9G8mmBkLhQJwCon3hoJN","output_modalities":["audio"],
            "max_output_tokens":"inf",
            "audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},
            "metadata":{"turn":"3"}}}"#,
    ),
    (
        "response.done",
        r#"{"type":"response.done","event_id":"event_CCXHxcMy86rrKhBLDdqCh","response":{
            "object":"realtime.response","id":"resp_CCXHw0UJld10EzIUXQCNh","status":"completed",
            "output":[{"id":"item_CCXHwGjjDUfOXbiySlK7i","type":"message","status":"completed",
                       "role":"assistant","content":[{"type":"output_audio","transcript":"Loud and clear! I can hear you perfectly."}]}],
            "conversation_id":"conv_CCXHsurMKcaVxIZvaCI5m","output_modalities":["audio"],"max_output_tokens":"inf",
            "audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"alloy"}},
            "usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,
                     "input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,
                                            "cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},
                     "output_token_details":{"text_tokens":30,"audio_tokens":91}}}}"#,
    ),
    (
        "response.done.cancelled_with_call",
        r#"{"type":"response.done","event_id":"event_D1","response":{
            "object":"realtime.response","id":"resp_D1","status":"cancelled",
            "status_details":{"type":"cancelled","reason":"turn_detected"},
            "output":[{"id":"item_D1","object":"realtime.item","type":"message","status":"incomplete","role":"assistant",
                       "content":[{"type":"output_audio","transcript":"Sure, the weather in"}]},
                      {"id":"item_D2","object":"realtime.item","type":"function_call","status":"completed",
                       "call_id":"call_D2","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}],
            "conversation_id":"conv_D","output_modalities":["audio"],
            "usage":{"total_tokens":10,"input_tokens":8,"output_tokens":2,
                     "input_token_details":{"text_tokens":8,"audio_tokens":0,"image_tokens":0,"cached_tokens":0},
                     "output_token_details":{"text_tokens":2,"audio_tokens":0}}}}"#,
    ),
    (
        "response.output_item.added",
        r#"{"type":"response.output_item.added","event_id":"event_C9G8pjnLoaHxNCskn5xNr",
            "response_id":"resp_C9G8p7IH2WxLbkgPNouYL","output_index":0,"item":{
              "id":"item_C9G8pGVKYnaZu8PH5YQ9O","type":"message","status":"in_progress",
              "role":"assistant","content":[]}}"#,
    ),
    (
        "response.output_item.done",
        r#"{"type":"response.output_item.done","event_id":"event_CCXHxvxeXqPyJwOcFM9jv",
            "response_id":"resp_CCXHw0UJld10EzIUXQCNh","output_index":1,"item":{
              "id":"item_CCXHwGjjDUfOXbiySlK7i","object":"realtime.item","type":"function_call",
              "status":"completed","call_id":"call_sHlR7iaFwQ2YQOqm","name":"get_weather",
              "arguments":"{\"city\":\"San Francisco\"}"}}"#,
    ),
    (
        "response.content_part.added",
        r#"{"type":"response.content_part.added","event_id":"event_3738","response_id":"resp_001",
            "item_id":"msg_007","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}}"#,
    ),
    (
        "response.content_part.done",
        r#"{"type":"response.content_part.done","event_id":"event_CCXHxcMIQbiFIrtNjyiVc",
            "response_id":"resp_CCXHw0UJld10EzIUXQCNh","item_id":"item_CCXHwGjjDUfOXbiySlK7i",
            "output_index":0,"content_index":0,"part":{"type":"text","text":"Sure, I can help with that."}}"#,
    ),
    (
        "response.output_audio.delta",
        r#"{"type":"response.output_audio.delta","event_id":"event_CCXHxgcFkTJ6CdXRrCc8Q",
            "response_id":"resp_CCXHw0UJld10EzIUXQCNh","item_id":"item_CCXHwGjjDUfOXbiySlK7i",
            "output_index":0,"content_index":0,"delta":"AAAAAP//AQD+/wIA/f8DAA=="}"#,
    ),
    (
        "response.output_audio.done",
        r#"{"type":"response.output_audio.done","event_id":"event_CCXHxLxDEX2NeAlVHxTGT",
            "response_id":"resp_CCXHw0UJld10EzIUXQCNh","item_id":"item_CCXHwGjjDUfOXbiySlK7i",
            "output_index":0,"content_index":0}"#,
    ),
    (
        "response.output_audio_transcript.delta",
        r#"{"type":"response.output_audio_transcript.delta","event_id":"event_CCXGRxsAimPAs8kS2Wc7Z",
            "response_id":"resp_CCXGRxbY0n6WE4EszhF5w","item_id":"item_CCXGRxbY0n6WE4EszhF5w",
            "output_index":0,"content_index":0,"delta":"Loud"}"#,
    ),
    (
        "response.output_audio_transcript.done",
        r#"{"type":"response.output_audio_transcript.done","event_id":"event_CCXHxF4X5ZovXyfdlbIij",
            "response_id":"resp_CCXHw0UJld10EzIUXQCNh","item_id":"item_CCXHwGjjDUfOXbiySlK7i",
            "output_index":0,"content_index":0,"transcript":"Loud and clear! I can hear you perfectly."}"#,
    ),
    (
        "response.output_text.delta",
        r#"{"type":"response.output_text.delta","event_id":"event_4142","response_id":"resp_001",
            "item_id":"msg_007","output_index":0,"content_index":0,"delta":"Sure, I can h"}"#,
    ),
    (
        "response.output_text.done",
        r#"{"type":"response.output_text.done","event_id":"event_4344","response_id":"resp_001",
            "item_id":"msg_007","output_index":0,"content_index":0,"text":"Sure, I can help with that."}"#,
    ),
    (
        "response.function_call_arguments.delta",
        r#"{"type":"response.function_call_arguments.delta","event_id":"event_5354","response_id":"resp_002",
            "item_id":"fc_001","output_index":0,"call_id":"call_001","delta":"{\"location\": \"San\""}"#,
    ),
    (
        "response.function_call_arguments.done",
        r#"{"type":"response.function_call_arguments.done","event_id":"event_5556","response_id":"resp_002",
            "item_id":"fc_001","output_index":0,"call_id":"call_001","name":"get_weather",
            "arguments":"{\"location\": \"San Francisco\"}"}"#,
    ),
    (
        "mcp_list_tools.in_progress",
        r#"{"type":"mcp_list_tools.in_progress","event_id":"event_6101","item_id":"mcp_list_tools_001"}"#,
    ),
    (
        "mcp_list_tools.completed",
        r#"{"type":"mcp_list_tools.completed","event_id":"event_6102","item_id":"mcp_list_tools_001"}"#,
    ),
    (
        "mcp_list_tools.failed",
        r#"{"type":"mcp_list_tools.failed","event_id":"event_6103","item_id":"mcp_list_tools_001"}"#,
    ),
    (
        "response.mcp_call.in_progress",
        r#"{"type":"response.mcp_call.in_progress","event_id":"event_6301","output_index":0,"item_id":"mcp_call_001"}"#,
    ),
    (
        "response.mcp_call.completed",
        r#"{"type":"response.mcp_call.completed","event_id":"event_6302","output_index":0,"item_id":"mcp_call_001"}"#,
    ),
    (
        "response.mcp_call.failed",
        r#"{"type":"response.mcp_call.failed","event_id":"event_6303","output_index":0,"item_id":"mcp_call_001"}"#,
    ),
    (
        "response.mcp_call_arguments.delta",
        r#"{"type":"response.mcp_call_arguments.delta","event_id":"event_6201","response_id":"resp_001",
            "item_id":"mcp_call_001","output_index":0,"delta":"{\"partial\":true}","obfuscation":"Xa9"}"#,
    ),
    (
        "response.mcp_call_arguments.done",
        r#"{"type":"response.mcp_call_arguments.done","event_id":"event_6202","response_id":"resp_001",
            "item_id":"mcp_call_001","output_index":0,"arguments":"{\"q\":\"docs\"}"}"#,
    ),
];

fn sample(name: &str) -> &'static str {
    SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .1
}

fn decode(name: &str) -> ServerEvent {
    ServerEvent::from_json(sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Destructures the decoded sample `$name` as `ServerEvent::$variant`.
macro_rules! expect {
    ($name:literal, $variant:ident) => {
        match decode($name) {
            ServerEvent::$variant(e) => e,
            other => panic!("{} decoded as {:?}", $name, other),
        }
    };
}

#[test]
fn every_type_has_a_sample_and_roundtrips() {
    assert_eq!(ServerEvent::TYPES.len(), 46);
    for t in ServerEvent::TYPES {
        assert!(SAMPLES.iter().any(|(n, _)| n == t), "no sample for {t}");
    }
    for (name, json) in SAMPLES {
        let original = value(name, json);
        let event = ServerEvent::from_json(json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!matches!(event, ServerEvent::Unknown { .. }), "{name}");
        assert_eq!(
            Some(event.event_type()),
            original["type"].as_str(),
            "{name}"
        );
        assert!(name.starts_with(event.event_type()), "{name}");
        assert_eq!(
            Some(event.event_id()),
            original["event_id"].as_str().or(Some("")),
            "{name}"
        );
        let encoded = event.to_json();
        assert!(
            encoded.starts_with(&format!(r#"{{"type":"{}""#, event.event_type())),
            "{name}"
        );
        // The samples' only nulls are session settings that are off, which round-trip as null.
        assert_eq!(
            value(name, &encoded),
            original,
            "{name} re-encodes differently"
        );
        assert_eq!(
            ServerEvent::from_value(original.clone()).unwrap(),
            event,
            "{name}"
        );
        assert_eq!(
            serde_json::from_value::<ServerEvent>(original).unwrap(),
            event,
            "{name}"
        );
    }
}

#[test]
fn dump_samples_for_conformance_check() {
    dump("server", SAMPLES, |json| {
        ServerEvent::from_json(json).unwrap().to_json()
    });
}

#[test]
fn session_events() {
    let e = expect!("session.created", SessionCreated);
    assert_eq!(e.event_id, "event_C9G5RJeJ2gF77mV7f2B1j");
    let s = e.session;
    assert_eq!(s.kind, Some(SessionKind::Realtime));
    assert_eq!(s.id.as_deref(), Some("sess_C9G5QPteg4UIbotdKLoYQ"));
    assert_eq!(s.object.as_deref(), Some("realtime.session"));
    assert_eq!(s.expires_at, Some(1756324625));
    assert_eq!(s.output_format(), Some(AudioFormat::PCM16_24K));
    assert_eq!(s.max_output_tokens, Some(MaxOutputTokens::Inf));
    assert_eq!(s.tools, Some(vec![]));
    assert_eq!(s.truncation, Some(json!("auto")));
    let td = s.turn_detection().unwrap();
    assert!(td.create_response() && td.interrupt_response());
    assert!(matches!(
        td,
        TurnDetection::ServerVad {
            silence_duration_ms: Some(200),
            ..
        }
    ));
    let input = s.audio.as_ref().unwrap().input.as_ref().unwrap();
    assert_eq!(input.transcription, Some(None));

    let e = expect!("session.updated", SessionUpdated);
    let s = e.session;
    assert_eq!(s.turn_detection(), None);
    assert_eq!(
        s.audio
            .as_ref()
            .unwrap()
            .input
            .as_ref()
            .unwrap()
            .turn_detection,
        Some(None)
    );
    assert_eq!(s.input_format(), Some(AudioFormat::G711_ULAW));
    assert_eq!(s.max_output_tokens, Some(MaxOutputTokens::Tokens(4096)));
    let tools = s.tools.as_ref().unwrap();
    assert_eq!(tools[0].name(), Some("get_weather"));
    assert!(matches!(&tools[1], ToolDefinition::Other(raw) if raw["server_label"] == "deepwiki"));
    assert_eq!(s.tool_choice, Some(ToolChoice::function("get_weather")));
    let output = s.audio.as_ref().unwrap().output.as_ref().unwrap();
    assert_eq!(output.voice, Some(Voice::from("ash")));
    assert_eq!(output.speed, Some(1.1));
}

#[test]
fn error_and_rate_limits() {
    let e = expect!("error", Error);
    assert_eq!(e.event_id, "event_C9G8mIpqRdl5iaUg9p2Ua");
    assert_eq!(e.error.kind, "invalid_request_error");
    assert_eq!(
        e.error.code.as_deref(),
        Some("conversation_already_has_active_response")
    );
    assert!(
        e.error
            .message
            .starts_with("Conversation already has an active response")
    );
    assert_eq!(e.error.param.as_deref(), Some("response"));
    assert_eq!(e.error.event_id.as_deref(), Some("evt_rc_7"));
    let server_error = crate::ServerError::from(e.error);
    assert_eq!(server_error.kind, "invalid_request_error");

    let e = expect!("rate_limits.updated", RateLimitsUpdated);
    assert_eq!(e.rate_limits.len(), 2);
    assert_eq!(
        e.rate_limits[1],
        RateLimit {
            name: Some("tokens".into()),
            limit: Some(50000),
            remaining: Some(49950),
            reset_seconds: Some(0.12)
        }
    );
}

#[test]
fn conversation_events() {
    let e = expect!("conversation.created", ConversationCreated);
    assert_eq!(e.conversation.id.as_deref(), Some("conv_001"));
    assert_eq!(
        e.conversation.object.as_deref(),
        Some("realtime.conversation")
    );

    let e = expect!("conversation.item.added", ConversationItemAdded);
    assert_eq!(
        e.previous_item_id.as_deref(),
        Some("item_C9G8pGVKYnaZu8PH5YQ9O")
    );
    assert_eq!(e.item.id(), Some("item_C9G8pGVKYnaZu8PH5YQ9P"));
    let Item::Message(m) = &e.item else { panic!() };
    assert_eq!(m.role, Role::User);
    assert_eq!(
        m.content,
        vec![ContentPart::InputAudio {
            audio: None,
            transcript: None
        }]
    );

    let e = expect!(
        "conversation.item.added.mcp_list_tools",
        ConversationItemAdded
    );
    assert_eq!(e.previous_item_id, None);
    assert!(matches!(&e.item, Item::Other(raw) if raw["tools"][0]["name"] == "ask_question"));
    assert_eq!(e.item.id(), Some("mcpl_001"));
    assert_eq!(e.item.item_type(), "mcp_list_tools");

    let e = expect!("conversation.item.created", ConversationItemCreated);
    assert_eq!(e.previous_item_id.as_deref(), Some("msg_002"));
    assert_eq!(e.item, {
        let mut item = Item::user_text("Hello, how are you?");
        if let Item::Message(m) = &mut item {
            m.id = Some("msg_003".into());
            m.object = Some("realtime.item".into());
            m.status = Some(ItemStatus::Completed);
        }
        item
    });

    let e = expect!("conversation.item.done", ConversationItemDone);
    assert_eq!(e.item.status(), Some(ItemStatus::Completed));
    let Item::Message(m) = &e.item else { panic!() };
    assert_eq!(m.role, Role::Assistant);
    assert!(m.text().starts_with("Oh, I can hear you"));

    let e = expect!("conversation.item.retrieved", ConversationItemRetrieved);
    let Item::Message(m) = &e.item else { panic!() };
    assert_eq!(
        m.content[0],
        ContentPart::OutputAudio {
            audio: Some("AAAAAP//AQD+/wIA".into()),
            transcript: Some("Yes, I can hear you loud and clear.".into())
        }
    );

    let e = expect!("conversation.item.deleted", ConversationItemDeleted);
    assert_eq!(
        (e.event_id.as_str(), e.item_id.as_str()),
        ("event_2728", "item_003")
    );

    let e = expect!("conversation.item.truncated", ConversationItemTruncated);
    assert_eq!(
        e,
        ConversationItemTruncatedEvent {
            event_id: "event_2526".into(),
            item_id: "item_002".into(),
            content_index: 0,
            audio_end_ms: 1500
        }
    );
}

#[test]
fn input_transcription_events() {
    let e = expect!(
        "conversation.item.input_audio_transcription.delta",
        ConversationItemInputAudioTranscriptionDelta
    );
    assert_eq!(e.item_id, "item_CCXGQ4e1ht4cOraEYcuR2");
    assert_eq!(e.content_index, Some(0));
    assert_eq!(e.delta, "Hey,");
    assert_eq!(e.logprobs, None);

    let e = expect!(
        "conversation.item.input_audio_transcription.completed",
        ConversationItemInputAudioTranscriptionCompleted
    );
    assert_eq!(e.content_index, 0);
    assert_eq!(e.transcript, "Hey, can you hear me?");
    assert_eq!(e.usage.as_ref().unwrap()["total_tokens"], 22);
    assert_eq!(e.logprobs.as_ref().unwrap()[0]["token"], "Hey");
    assert_eq!(e.languages, Some(json!([{"code": "en"}])));

    let e = expect!(
        "conversation.item.input_audio_transcription.failed",
        ConversationItemInputAudioTranscriptionFailed
    );
    assert_eq!(e.item_id, "msg_003");
    assert_eq!(e.error.kind.as_deref(), Some("transcription_error"));
    assert_eq!(e.error.code.as_deref(), Some("audio_unintelligible"));
    assert_eq!(
        e.error.message.as_deref(),
        Some("The audio could not be transcribed.")
    );
    assert_eq!(e.error.param.as_deref(), Some("audio"));

    let e = expect!(
        "conversation.item.input_audio_transcription.segment",
        ConversationItemInputAudioTranscriptionSegment
    );
    assert_eq!(
        (e.id.as_str(), e.text.as_str(), e.speaker.as_str()),
        ("seg_0001", "hello", "A")
    );
    assert_eq!((e.start, e.end), (0.0, 0.4));
}

#[test]
fn input_audio_buffer_events() {
    let e = expect!(
        "input_audio_buffer.speech_started",
        InputAudioBufferSpeechStarted
    );
    assert_eq!((e.audio_start_ms, e.item_id.as_str()), (1000, "msg_003"));
    let e = expect!(
        "input_audio_buffer.speech_stopped",
        InputAudioBufferSpeechStopped
    );
    assert_eq!((e.audio_end_ms, e.item_id.as_str()), (2000, "msg_003"));
    let e = expect!("input_audio_buffer.committed", InputAudioBufferCommitted);
    assert_eq!(e.item_id, "msg_002");
    assert_eq!(e.previous_item_id.as_deref(), Some("msg_001"));
    let e = expect!(
        "input_audio_buffer.committed.first_item",
        InputAudioBufferCommitted
    );
    assert_eq!(e.previous_item_id, None);
    let e = expect!("input_audio_buffer.cleared", InputAudioBufferCleared);
    assert_eq!(e.event_id, "event_1314");
    let e = expect!(
        "input_audio_buffer.timeout_triggered",
        InputAudioBufferTimeoutTriggered
    );
    assert_eq!((e.audio_start_ms, e.audio_end_ms), (13216, 19232));
    assert_eq!(e.item_id, "item_CEKKrWH0GiwN0ET97NUZc");
    let e = expect!(
        "input_audio_buffer.dtmf_event_received",
        InputAudioBufferDtmfEventReceived
    );
    assert_eq!(
        e,
        InputAudioBufferDtmfEventReceivedEvent {
            event_id: String::new(),
            event: "7".into(),
            received_at: 1763605109
        }
    );
}

#[test]
fn output_audio_buffer_events() {
    let e = expect!("output_audio_buffer.started", OutputAudioBufferStarted);
    assert_eq!(
        (e.event_id.as_str(), e.response_id.as_str()),
        ("event_abc123", "resp_abc123")
    );
    let e = expect!("output_audio_buffer.stopped", OutputAudioBufferStopped);
    assert_eq!(
        (e.event_id.as_str(), e.response_id.as_str()),
        ("event_abc124", "resp_abc123")
    );
    let e = expect!("output_audio_buffer.cleared", OutputAudioBufferCleared);
    assert_eq!(
        (e.event_id.as_str(), e.response_id.as_str()),
        ("event_abc125", "resp_abc123")
    );
}

#[test]
fn response_lifecycle_events() {
    let e = expect!("response.created", ResponseCreated);
    let r = e.response;
    assert_eq!(r.id, "resp_C9G8p7IH2WxLbkgPNouYL");
    assert_eq!(r.object.as_deref(), Some("realtime.response"));
    assert_eq!(r.status, Some(ResponseStatus::InProgress));
    assert!(r.output.is_empty());
    assert_eq!(r.usage, None);
    assert_eq!(
        r.conversation_id.as_deref(),
        Some("conv_C9G8mmBkLhQJwCon3hoJN")
    );
    assert_eq!(r.output_modalities, Some(vec![Modality::Audio]));
    assert_eq!(r.max_output_tokens, Some(MaxOutputTokens::Inf));
    assert_eq!(r.metadata, Some(json!({"turn": "3"})));
    let out = r.audio.unwrap().output.unwrap();
    assert_eq!(
        (out.format, out.voice),
        (Some(AudioFormat::PCM16_24K), Some(Voice::from("marin")))
    );

    let e = expect!("response.done", ResponseDone);
    let r = e.response;
    assert_eq!(r.status, Some(ResponseStatus::Completed));
    assert_eq!(r.status_reason(), None);
    assert_eq!(r.output.len(), 1);
    let Item::Message(m) = &r.output[0] else {
        panic!()
    };
    assert_eq!(m.text(), "Loud and clear! I can hear you perfectly.");
    let usage = r.usage.unwrap();
    assert_eq!(
        (usage.total_tokens, usage.input_tokens, usage.output_tokens),
        (253, 132, 121)
    );
    let input = usage.input_token_details.unwrap();
    assert_eq!(
        (
            input.text_tokens,
            input.audio_tokens,
            input.image_tokens,
            input.cached_tokens
        ),
        (119, 13, 0, 64)
    );
    assert_eq!(input.cached_tokens_details.unwrap()["text_tokens"], 64);
    assert_eq!(
        usage.output_token_details,
        Some(OutputTokenDetails {
            text_tokens: 30,
            audio_tokens: 91
        })
    );

    let e = expect!("response.done.cancelled_with_call", ResponseDone);
    let r = e.response;
    assert_eq!(r.status, Some(ResponseStatus::Cancelled));
    assert_eq!(r.status_reason(), Some("turn_detected"));
    assert_eq!(r.status_error(), None);
    assert_eq!(r.output[0].status(), Some(ItemStatus::Incomplete));
    let Item::FunctionCall(call) = &r.output[1] else {
        panic!()
    };
    assert_eq!(
        (call.call_id.as_str(), call.name.as_str()),
        ("call_D2", "get_weather")
    );
    assert_eq!(call.status, Some(ItemStatus::Completed));
    assert_eq!(
        r.usage
            .unwrap()
            .input_token_details
            .unwrap()
            .cached_tokens_details,
        None
    );
}

#[test]
fn response_output_item_and_part_events() {
    let e = expect!("response.output_item.added", ResponseOutputItemAdded);
    assert_eq!(
        (e.response_id.as_str(), e.output_index),
        ("resp_C9G8p7IH2WxLbkgPNouYL", 0)
    );
    assert_eq!(e.item.status(), Some(ItemStatus::InProgress));
    assert!(
        matches!(&e.item, Item::Message(m) if m.role == Role::Assistant && m.content.is_empty())
    );

    let e = expect!("response.output_item.done", ResponseOutputItemDone);
    assert_eq!(e.output_index, 1);
    let Item::FunctionCall(call) = e.item else {
        panic!()
    };
    assert_eq!(call.call_id, "call_sHlR7iaFwQ2YQOqm");
    assert_eq!(call.arguments, r#"{"city":"San Francisco"}"#);
    assert_eq!(call.object.as_deref(), Some("realtime.item"));

    let e = expect!("response.content_part.added", ResponseContentPartAdded);
    assert_eq!(
        (e.response_id.as_str(), e.item_id.as_str()),
        ("resp_001", "msg_007")
    );
    assert_eq!((e.output_index, e.content_index), (0, 0));
    assert_eq!(
        e.part,
        ContentPart::Audio {
            audio: None,
            transcript: Some(String::new())
        }
    );

    let e = expect!("response.content_part.done", ResponseContentPartDone);
    assert_eq!(
        e.part,
        ContentPart::Text {
            text: "Sure, I can help with that.".into()
        }
    );
}

#[test]
fn response_stream_events() {
    let e = expect!("response.output_audio.delta", ResponseOutputAudioDelta);
    assert_eq!(
        e,
        ResponseOutputAudioDeltaEvent {
            event_id: "event_CCXHxgcFkTJ6CdXRrCc8Q".into(),
            response_id: "resp_CCXHw0UJld10EzIUXQCNh".into(),
            item_id: "item_CCXHwGjjDUfOXbiySlK7i".into(),
            output_index: 0,
            content_index: 0,
            delta: "AAAAAP//AQD+/wIA/f8DAA==".into(),
        }
    );
    let e = expect!("response.output_audio.done", ResponseOutputAudioDone);
    assert_eq!(e.item_id, "item_CCXHwGjjDUfOXbiySlK7i");
    assert_eq!(e.response_id, "resp_CCXHw0UJld10EzIUXQCNh");

    let e = expect!(
        "response.output_audio_transcript.delta",
        ResponseOutputAudioTranscriptDelta
    );
    assert_eq!(e.delta, "Loud");
    assert_eq!(e.item_id, "item_CCXGRxbY0n6WE4EszhF5w");
    let e = expect!(
        "response.output_audio_transcript.done",
        ResponseOutputAudioTranscriptDone
    );
    assert_eq!(e.transcript, "Loud and clear! I can hear you perfectly.");

    let e = expect!("response.output_text.delta", ResponseOutputTextDelta);
    assert_eq!(
        (e.item_id.as_str(), e.delta.as_str()),
        ("msg_007", "Sure, I can h")
    );
    let e = expect!("response.output_text.done", ResponseOutputTextDone);
    assert_eq!(e.text, "Sure, I can help with that.");

    let e = expect!(
        "response.function_call_arguments.delta",
        ResponseFunctionCallArgumentsDelta
    );
    assert_eq!(
        (e.call_id.as_str(), e.item_id.as_str()),
        ("call_001", "fc_001")
    );
    assert_eq!(e.delta, r#"{"location": "San""#);
    let e = expect!(
        "response.function_call_arguments.done",
        ResponseFunctionCallArgumentsDone
    );
    assert_eq!(e.name.as_deref(), Some("get_weather"));
    assert_eq!(e.arguments, r#"{"location": "San Francisco"}"#);
    assert_eq!((e.response_id.as_str(), e.output_index), ("resp_002", 0));
}

#[test]
fn mcp_events() {
    assert_eq!(
        expect!("mcp_list_tools.in_progress", McpListToolsInProgress).item_id,
        "mcp_list_tools_001"
    );
    assert_eq!(
        expect!("mcp_list_tools.completed", McpListToolsCompleted).event_id,
        "event_6102"
    );
    assert_eq!(
        expect!("mcp_list_tools.failed", McpListToolsFailed).item_id,
        "mcp_list_tools_001"
    );
    let e = expect!("response.mcp_call.in_progress", ResponseMcpCallInProgress);
    assert_eq!((e.item_id.as_str(), e.output_index), ("mcp_call_001", 0));
    let e = expect!("response.mcp_call.completed", ResponseMcpCallCompleted);
    assert_eq!(e.event_id, "event_6302");
    let e = expect!("response.mcp_call.failed", ResponseMcpCallFailed);
    assert_eq!(e.event_id, "event_6303");
    let e = expect!(
        "response.mcp_call_arguments.delta",
        ResponseMcpCallArgumentsDelta
    );
    assert_eq!(e.delta, r#"{"partial":true}"#);
    assert_eq!(e.obfuscation.as_deref(), Some("Xa9"));
    let e = expect!(
        "response.mcp_call_arguments.done",
        ResponseMcpCallArgumentsDone
    );
    assert_eq!(
        (e.response_id.as_str(), e.arguments.as_str()),
        ("resp_001", r#"{"q":"docs"}"#)
    );
}

#[test]
fn unknown_type_keeps_raw() {
    let json = r#"{"type":"response.output_video.delta","event_id":"event_9","delta":"…","n":[1,{"a":null}]}"#;
    let event = ServerEvent::from_json(json).unwrap();
    let ServerEvent::Unknown { event_type, raw } = &event else {
        panic!()
    };
    assert_eq!(event_type, "response.output_video.delta");
    assert_eq!(raw, &value("unknown", json));
    assert_eq!(event.event_type(), "response.output_video.delta");
    assert_eq!(event.event_id(), "event_9");
    assert_eq!(value("unknown", &event.to_json()), value("unknown", json));
    // Beta-only names are unknown in the GA protocol.
    let beta = ServerEvent::from_json(r#"{"type":"response.audio.delta","delta":"AAAA"}"#).unwrap();
    assert!(matches!(beta, ServerEvent::Unknown { .. }));
}

#[test]
fn decode_errors() {
    let frame_errors = [
        "",
        "not json",
        "[]",
        "[\"error\"]",
        "null",
        "\"error\"",
        r#"{"event_id":"e"}"#,
        r#"{"type":7}"#,
        r#"{"type":"error""#,
        r#"{"type":"error","error":{"type":"x","message":"m"}} {}"#,
    ];
    for json in frame_errors {
        let err = ServerEvent::from_json(json).unwrap_err();
        assert_eq!(err.event_type, None, "{json}");
        assert!(!err.message.is_empty());
    }

    // Known type, missing or mistyped field: the error names the type and the field.
    let cases = [
        (
            r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0}"#,
            "response.output_audio.delta",
            "delta",
        ),
        (r#"{"type":"error","event_id":"e"}"#, "error", "error"),
        (
            r#"{"type":"error","error":{"type":"server_error"}}"#,
            "error",
            "message",
        ),
        (
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":"10","item_id":"i"}"#,
            "input_audio_buffer.speech_started",
            "string",
        ),
        (
            r#"{"type":"response.done","response":{"id":"r","status":"exploded","output":[]}}"#,
            "response.done",
            "exploded",
        ),
        (
            r#"{"type":"conversation.item.added","item":{"type":"message","content":[]}}"#,
            "conversation.item.added",
            "role",
        ),
        (
            r#"{"type":"conversation.item.deleted","event_id":"e","item_id":null}"#,
            "conversation.item.deleted",
            "null",
        ),
    ];
    for (json, event_type, needle) in cases {
        let err = ServerEvent::from_json(json).unwrap_err();
        assert_eq!(err.event_type.as_deref(), Some(event_type), "{json}");
        assert!(err.message.contains(needle), "{json}: {err}");
        assert!(err.to_string().contains(event_type));
        let via_value = ServerEvent::from_value(value("case", json)).unwrap_err();
        assert_eq!(via_value.event_type.as_deref(), Some(event_type));
    }
}

#[test]
fn unknown_fields_are_ignored_and_event_id_is_optional() {
    let json = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i",
        "output_index":1,"content_index":2,"delta":"AAAA","obfuscation":"zz","extra":{"deep":[null]}}"#;
    let ServerEvent::ResponseOutputAudioDelta(e) = ServerEvent::from_json(json).unwrap() else {
        panic!()
    };
    assert_eq!(e.event_id, "");
    assert_eq!(
        (e.output_index, e.content_index, e.delta.as_str()),
        (1, 2, "AAAA")
    );
    // An absent event_id is not invented on re-encoding.
    assert!(!ServerEvent::from(e).to_json().contains("event_id"));

    // Nulls where the official model allows them decode as absent.
    let json = r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error",
        "code":null,"message":"bad","param":null,"event_id":null}}"#;
    let ServerEvent::Error(e) = ServerEvent::from_json(json).unwrap() else {
        panic!()
    };
    assert_eq!(
        e.error,
        ErrorDetails {
            kind: "invalid_request_error".into(),
            message: "bad".into(),
            ..Default::default()
        }
    );
}

#[test]
fn escaped_type_strings_decode() {
    let json = r#"{"type":"input_audio_buffer\u002ecleared","event_id":"e1"}"#;
    assert!(matches!(
        ServerEvent::from_json(json).unwrap(),
        ServerEvent::InputAudioBufferCleared(_)
    ));
}

#[test]
fn events_built_in_code_encode_like_the_server() {
    let event: ServerEvent = ResponseOutputAudioDeltaEvent {
        event_id: "event_1".into(),
        response_id: "resp_1".into(),
        item_id: "item_1".into(),
        delta: "AAAA".into(),
        ..Default::default()
    }
    .into();
    assert_eq!(
        event.to_json(),
        r#"{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"AAAA"}"#
    );
    let done: ServerEvent = ResponseDoneEvent {
        event_id: "event_2".into(),
        response: Response {
            id: "resp_1".into(),
            status: Some(ResponseStatus::Completed),
            ..Default::default()
        },
    }
    .into();
    assert_eq!(
        done.to_json(),
        r#"{"type":"response.done","event_id":"event_2","response":{"id":"resp_1","status":"completed","output":[]}}"#
    );
    assert_eq!(
        serde_json::to_value(&done).unwrap()["type"],
        "response.done"
    );
}
