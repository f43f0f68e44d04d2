//! Client event tests: one realistic sample per GA client event type (checked against the
//! official `openai` Python models), decoded, inspected and re-encoded.

use serde_json::{Value, json};

use super::*;
use crate::audio::AudioFormat;
use crate::protocol::test_support::{dump, value};
use crate::protocol::{
    ContentPart, Item, MaxOutputTokens, Modality, NoiseReduction, Role, SessionKind, ToolChoice,
    ToolDefinition, TurnDetection, Voice,
};

/// `(name, json)`; the name starts with the event type (extra samples get a suffix).
const SAMPLES: &[(&str, &str)] = &[
    (
        "session.update",
        r#"{"type":"session.update","event_id":"evt_su_1","session":{
            "type":"realtime","model":"gpt-realtime","output_modalities":["audio"],
            "instructions":"You are a helpful travel agent. Keep answers short.",
            "audio":{
              "input":{"format":{"type":"audio/pcm","rate":24000},
                       "noise_reduction":{"type":"near_field"},
                       "transcription":{"model":"gpt-4o-mini-transcribe","language":"en"},
                       "turn_detection":{"type":"semantic_vad","eagerness":"auto","create_response":true,"interrupt_response":true}},
              "output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin","speed":1.0}},
            "tools":[{"type":"function","name":"get_weather","description":"Current weather for a city.",
                      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}],
            "tool_choice":"auto","max_output_tokens":"inf","tracing":"auto",
            "truncation":{"type":"retention_ratio","retention_ratio":0.8},
            "include":["item.input_audio_transcription.logprobs"],"parallel_tool_calls":true}}"#,
    ),
    (
        "session.update.telephony_manual_turns",
        r#"{"type":"session.update","session":{"type":"realtime",
            "audio":{"input":{"format":{"type":"audio/pcmu"},"noise_reduction":null,"turn_detection":null},
                     "output":{"format":{"type":"audio/pcmu"},"voice":{"id":"voice_1234"}}},
            "tool_choice":{"type":"function","name":"lookup_order"},"max_output_tokens":1024,
            "prompt":{"id":"pmpt_123","version":"2","variables":{"city":"Paris"}},
            "tracing":{"workflow_name":"support","group_id":"grp_1","metadata":{"tenant":"acme"}}}}"#,
    ),
    (
        "input_audio_buffer.append",
        r#"{"type":"input_audio_buffer.append","event_id":"evt_ap_1","audio":"AAAAAP//AQD+/wIA"}"#,
    ),
    (
        "input_audio_buffer.commit",
        r#"{"type":"input_audio_buffer.commit","event_id":"evt_cm_1"}"#,
    ),
    (
        "input_audio_buffer.clear",
        r#"{"type":"input_audio_buffer.clear"}"#,
    ),
    (
        "conversation.item.create",
        r#"{"type":"conversation.item.create","event_id":"evt_ic_1","previous_item_id":"root",
            "item":{"type":"message","role":"user","content":[
              {"type":"input_text","text":"What is in this picture?"},
              {"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}]}}"#,
    ),
    (
        "conversation.item.create.function_call_output",
        r#"{"type":"conversation.item.create","item":{"type":"function_call_output",
            "call_id":"call_sHlR7iaFwQ2YQOqm","output":"{\"temp_c\":21,\"sky\":\"clear\"}"}}"#,
    ),
    (
        "conversation.item.create.history",
        r#"{"type":"conversation.item.create","previous_item_id":"item_A1","item":{"type":"message",
            "role":"assistant","content":[{"type":"output_text","text":"Your flight leaves at 9."}]}}"#,
    ),
    (
        "conversation.item.create.function_call",
        r#"{"type":"conversation.item.create","item":{"type":"function_call","call_id":"call_1",
            "name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}"#,
    ),
    (
        "conversation.item.retrieve",
        r#"{"type":"conversation.item.retrieve","event_id":"evt_rt_1","item_id":"item_CHfJQ7jc1OP3T1t"}"#,
    ),
    (
        "conversation.item.truncate",
        r#"{"type":"conversation.item.truncate","event_id":"evt_tr_1","item_id":"item_CHfJRnB5vo2bZG1",
            "content_index":0,"audio_end_ms":1480}"#,
    ),
    (
        "conversation.item.delete",
        r#"{"type":"conversation.item.delete","event_id":"evt_dl_1","item_id":"item_CHfJRnB5vo2bZG1"}"#,
    ),
    (
        "response.create",
        r#"{"type":"response.create","event_id":"evt_rc_1","response":{
            "conversation":"none","output_modalities":["text"],
            "instructions":"Classify the user's request as billing, travel or other.",
            "metadata":{"purpose":"classification"},
            "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"My card was charged twice."}]}],
            "tools":[{"type":"function","name":"classify","parameters":{"type":"object","properties":{"label":{"type":"string"}}}}],
            "tool_choice":"required","max_output_tokens":256,
            "audio":{"output":{"format":{"type":"audio/pcmu"},"voice":"ash"}}}}"#,
    ),
    (
        "response.create.bare",
        r#"{"type":"response.create","event_id":"evt_rc_2"}"#,
    ),
    (
        "response.cancel",
        r#"{"type":"response.cancel","event_id":"evt_cn_1","response_id":"resp_CHfJRSE3tXFt1cGI"}"#,
    ),
    (
        "output_audio_buffer.clear",
        r#"{"type":"output_audio_buffer.clear","event_id":"evt_oc_1"}"#,
    ),
];

fn sample(name: &str) -> &'static str {
    SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .1
}

fn decode(name: &str) -> ClientEvent {
    ClientEvent::from_json(sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_type_has_a_sample_and_roundtrips() {
    for t in ClientEvent::TYPES {
        assert!(SAMPLES.iter().any(|(n, _)| n == &t), "no sample for {t}");
    }
    for (name, json) in SAMPLES {
        let original = value(name, json);
        let event = ClientEvent::from_json(json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            Some(event.event_type()),
            original["type"].as_str(),
            "{name}"
        );
        assert!(name.starts_with(event.event_type()), "{name}");
        let encoded = event.to_json();
        assert!(
            !encoded.contains("null") || name.contains("manual_turns"),
            "{name}: {encoded}"
        );
        assert_eq!(
            value(name, &encoded),
            original,
            "{name} re-encodes differently"
        );
        // The generic serde path agrees with the fast path.
        assert_eq!(
            serde_json::from_str::<ClientEvent>(json).unwrap(),
            event,
            "{name}"
        );
        assert_eq!(ClientEvent::from_value(original).unwrap(), event, "{name}");
        assert_eq!(
            event.event_id(),
            value(name, json)["event_id"].as_str(),
            "{name}"
        );
    }
}

#[test]
fn dump_samples_for_conformance_check() {
    dump("client", SAMPLES, |json| {
        ClientEvent::from_json(json).unwrap().to_json()
    });
}

#[test]
fn session_update_fields() {
    let ClientEvent::SessionUpdate { event_id, session } = decode("session.update") else {
        panic!()
    };
    assert_eq!(event_id.as_deref(), Some("evt_su_1"));
    assert_eq!(session.kind, Some(SessionKind::Realtime));
    assert_eq!(session.output_modalities, Some(vec![Modality::Audio]));
    assert_eq!(session.input_format(), Some(AudioFormat::PCM16_24K));
    let input = session.audio.as_ref().unwrap().input.as_ref().unwrap();
    assert_eq!(
        input.noise_reduction,
        Some(Some(NoiseReduction::near_field()))
    );
    let tx = input.transcription.clone().unwrap().unwrap();
    assert_eq!(tx.model.as_deref(), Some("gpt-4o-mini-transcribe"));
    assert!(matches!(
        session.turn_detection(),
        Some(TurnDetection::SemanticVad { eagerness: Some(e), .. }) if e == "auto"
    ));
    let output = session.audio.as_ref().unwrap().output.as_ref().unwrap();
    assert_eq!(output.voice, Some(Voice::from("marin")));
    assert_eq!(output.speed, Some(1.0));
    assert_eq!(
        session.tools.as_ref().unwrap()[0].name(),
        Some("get_weather")
    );
    assert_eq!(session.tool_choice, Some(ToolChoice::auto()));
    assert_eq!(session.max_output_tokens, Some(MaxOutputTokens::Inf));
    assert_eq!(session.tracing, Some(json!("auto")));
    assert_eq!(session.truncation.as_ref().unwrap()["retention_ratio"], 0.8);
    assert_eq!(session.parallel_tool_calls, Some(true));

    let ClientEvent::SessionUpdate { event_id, session } =
        decode("session.update.telephony_manual_turns")
    else {
        panic!()
    };
    assert_eq!(event_id, None);
    let input = session.audio.as_ref().unwrap().input.as_ref().unwrap();
    assert_eq!(input.turn_detection, Some(None));
    assert_eq!(input.noise_reduction, Some(None));
    assert_eq!(input.transcription, None);
    assert_eq!(session.output_format(), Some(AudioFormat::G711_ULAW));
    let output = session.audio.as_ref().unwrap().output.as_ref().unwrap();
    assert_eq!(
        output.voice,
        Some(Voice::Custom {
            id: "voice_1234".into()
        })
    );
    assert_eq!(
        session.tool_choice,
        Some(ToolChoice::function("lookup_order"))
    );
    assert_eq!(
        session.max_output_tokens,
        Some(MaxOutputTokens::Tokens(1024))
    );
    assert_eq!(session.prompt.as_ref().unwrap()["id"], "pmpt_123");
}

#[test]
fn audio_buffer_events() {
    assert_eq!(
        decode("input_audio_buffer.append"),
        ClientEvent::InputAudioBufferAppend {
            event_id: Some("evt_ap_1".into()),
            audio: "AAAAAP//AQD+/wIA".into()
        }
    );
    assert_eq!(
        decode("input_audio_buffer.commit"),
        ClientEvent::InputAudioBufferCommit {
            event_id: Some("evt_cm_1".into())
        }
    );
    assert_eq!(
        decode("input_audio_buffer.clear"),
        ClientEvent::InputAudioBufferClear { event_id: None }
    );
    assert_eq!(
        decode("output_audio_buffer.clear"),
        ClientEvent::OutputAudioBufferClear {
            event_id: Some("evt_oc_1".into())
        }
    );
}

#[test]
fn conversation_item_events() {
    let ClientEvent::ConversationItemCreate {
        event_id,
        previous_item_id,
        item,
    } = decode("conversation.item.create")
    else {
        panic!()
    };
    assert_eq!(event_id.as_deref(), Some("evt_ic_1"));
    assert_eq!(previous_item_id.as_deref(), Some("root"));
    let Item::Message(m) = item else { panic!() };
    assert_eq!(m.role, Role::User);
    assert_eq!(
        m.content,
        vec![
            ContentPart::InputText {
                text: "What is in this picture?".into()
            },
            ContentPart::InputImage {
                image_url: Some("data:image/png;base64,iVBORw0KGgo=".into()),
                detail: Some("low".into())
            }
        ]
    );

    assert_eq!(
        decode("conversation.item.create.function_call_output"),
        ClientEvent::ConversationItemCreate {
            event_id: None,
            previous_item_id: None,
            item: Item::function_call_output(
                "call_sHlR7iaFwQ2YQOqm",
                r#"{"temp_c":21,"sky":"clear"}"#
            ),
        }
    );
    assert_eq!(
        decode("conversation.item.create.history"),
        ClientEvent::ConversationItemCreate {
            event_id: None,
            previous_item_id: Some("item_A1".into()),
            item: Item::assistant_text("Your flight leaves at 9."),
        }
    );
    let ClientEvent::ConversationItemCreate {
        item: Item::FunctionCall(call),
        ..
    } = decode("conversation.item.create.function_call")
    else {
        panic!()
    };
    assert_eq!(call.arguments, r#"{"city":"Paris"}"#);

    assert_eq!(
        decode("conversation.item.retrieve"),
        ClientEvent::ConversationItemRetrieve {
            event_id: Some("evt_rt_1".into()),
            item_id: "item_CHfJQ7jc1OP3T1t".into()
        }
    );
    assert_eq!(
        decode("conversation.item.truncate"),
        ClientEvent::ConversationItemTruncate {
            event_id: Some("evt_tr_1".into()),
            item_id: "item_CHfJRnB5vo2bZG1".into(),
            content_index: 0,
            audio_end_ms: 1480
        }
    );
    assert_eq!(
        decode("conversation.item.delete"),
        ClientEvent::ConversationItemDelete {
            event_id: Some("evt_dl_1".into()),
            item_id: "item_CHfJRnB5vo2bZG1".into()
        }
    );
}

#[test]
fn response_events() {
    let ClientEvent::ResponseCreate {
        event_id,
        response: Some(r),
    } = decode("response.create")
    else {
        panic!()
    };
    assert_eq!(event_id.as_deref(), Some("evt_rc_1"));
    assert_eq!(r.conversation.as_deref(), Some("none"));
    assert_eq!(r.output_modalities, Some(vec![Modality::Text]));
    assert_eq!(r.metadata, Some(json!({"purpose": "classification"})));
    assert_eq!(
        r.input,
        Some(vec![Item::user_text("My card was charged twice.")])
    );
    assert!(
        matches!(&r.tools.as_ref().unwrap()[0], ToolDefinition::Function { name, description: None, .. } if name == "classify")
    );
    assert_eq!(r.tool_choice, Some(ToolChoice::required()));
    assert_eq!(r.max_output_tokens, Some(MaxOutputTokens::Tokens(256)));
    let out = r.audio.unwrap().output.unwrap();
    assert_eq!(out.format, Some(AudioFormat::G711_ULAW));
    assert_eq!(out.voice, Some(Voice::from("ash")));

    assert_eq!(
        decode("response.create.bare"),
        ClientEvent::ResponseCreate {
            event_id: Some("evt_rc_2".into()),
            response: None
        }
    );
    assert_eq!(
        decode("response.cancel"),
        ClientEvent::ResponseCancel {
            event_id: Some("evt_cn_1".into()),
            response_id: Some("resp_CHfJRSE3tXFt1cGI".into())
        }
    );
}

#[test]
fn encoding_emits_no_nulls_for_unset_fields() {
    let events = [
        ClientEvent::ResponseCreate {
            event_id: None,
            response: Some(ResponseCreateParams::default()),
        },
        ClientEvent::ResponseCancel {
            event_id: None,
            response_id: None,
        },
        ClientEvent::SessionUpdate {
            event_id: None,
            session: Default::default(),
        },
    ];
    let encoded: Vec<String> = events.iter().map(ClientEvent::to_json).collect();
    assert_eq!(
        encoded,
        [
            r#"{"type":"response.create","response":{}}"#,
            r#"{"type":"response.cancel"}"#,
            r#"{"type":"session.update","session":{}}"#,
        ]
    );
}

#[test]
fn decode_errors() {
    let cases: &[(&str, Option<&str>)] = &[
        ("not json", None),
        ("[]", None),
        (r#"{"event_id":"x"}"#, None),
        (r#"{"type":null}"#, None),
        (
            r#"{"type":"transcription_session.update","session":{}}"#,
            Some("transcription_session.update"),
        ),
        (
            r#"{"type":"input_audio_buffer.append"}"#,
            Some("input_audio_buffer.append"),
        ),
        (
            r#"{"type":"conversation.item.truncate","item_id":"i","content_index":0,"audio_end_ms":"100"}"#,
            Some("conversation.item.truncate"),
        ),
        (
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"robot","content":[]}}"#,
            Some("conversation.item.create"),
        ),
        (
            r#"{"type":"session.update","session":{"type":"realtime","output_modalities":["video"]}}"#,
            Some("session.update"),
        ),
    ];
    for (json, event_type) in cases {
        let err = ClientEvent::from_json(json).unwrap_err();
        assert_eq!(err.event_type.as_deref(), *event_type, "{json}");
        assert!(!err.message.is_empty());
        if let Ok(v) = serde_json::from_str::<Value>(json) {
            assert!(ClientEvent::from_value(v).is_err(), "{json}");
        }
    }
    let err = ClientEvent::from_json(r#"{"type":"input_audio_buffer.append"}"#).unwrap_err();
    assert!(err.message.contains("audio"), "{err}");
}

#[test]
fn unknown_fields_are_ignored() {
    let e = ClientEvent::from_json(
        r#"{"type":"input_audio_buffer.append","audio":"AAAA","future":{"a":[1,2]},"x":null}"#,
    )
    .unwrap();
    assert_eq!(
        e,
        ClientEvent::InputAudioBufferAppend {
            event_id: None,
            audio: "AAAA".into()
        }
    );
}
