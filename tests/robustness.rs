//! Bad input from the server: the decoder and a live session never panic, never grow without
//! bound, report what they cannot understand as errors, and keep going.
//!
//! Property tests run a modest number of cases (CI has two cores); raise them locally with
//! `PROPTEST_CASES=5000 cargo test --test robustness`.

mod support;

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::Config as ProptestConfig;
use realtime_agents::protocol::ServerEvent;
use realtime_agents::{
    Error, FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E,
};
use serde_json::{Map, Value, json};
use support::{FrameServer, ScriptedServer, ev, until, until_end};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// One realistic frame per known server event type (the protocol module's samples).
static SAMPLES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    include_str!("data/server_events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("sample is JSON"))
        .collect()
});

/// A runtime shared by the session property's cases.
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(n),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Field names of the protocol, so that random objects hit the decoders' fields.
const FIELDS: &[&str] = &[
    "type",
    "event_id",
    "item_id",
    "response_id",
    "delta",
    "item",
    "response",
    "session",
    "error",
    "call_id",
    "name",
    "arguments",
    "content_index",
    "output_index",
    "audio_start_ms",
    "audio_end_ms",
    "transcript",
    "previous_item_id",
    "status",
    "content",
    "role",
    "id",
    "output",
    "usage",
    "audio",
    "format",
    "code",
    "message",
    "text",
    "part",
    "rate_limits",
];

fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(FIELDS).prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Floats that survive serde_json's text round trip (its default parser is not
        // correctly rounded for every input, so some re-encode one ULP off).
        any::<f64>().prop_filter_map("finite, exact in JSON text", |f| {
            let n = serde_json::Number::from_f64(f)?;
            (serde_json::from_str::<f64>(&n.to_string()).ok()? == f).then_some(Value::from(n))
        }),
        select(vec![
            json!(0),
            json!(-1),
            json!(1.5),
            json!(u32::MAX),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
        ]),
    ]
    .boxed()
}

fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        arb_number(),
        ".{0,16}".prop_map(Value::from),
        select(ServerEvent::TYPES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An object with a known (or unknown) `type` and random fields: "right type, wrong body".
fn arb_event_value() -> BoxedStrategy<Value> {
    (
        prop_oneof![
            4 => select(ServerEvent::TYPES).prop_map(str::to_owned),
            1 => "[a-z_.]{1,24}",
        ],
        prop::collection::vec((arb_key(), arb_json()), 0..6),
    )
        .prop_map(|(t, fields)| {
            let mut obj: Map<String, Value> = fields.into_iter().collect();
            obj.insert("type".into(), Value::String(t));
            Value::Object(obj)
        })
        .boxed()
}

/// A place in a JSON value.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    At(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(Seg::Key(k.clone()));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(Seg::At(i));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::At(i) => v.get_mut(*i),
    })
}

/// Placeholders: strings put into the value, replaced in the encoded text by what no JSON
/// value can hold (numbers out of range, nesting past the parser's limit).
const HUGE: &str = "\u{1}HUGE\u{1}";
const DEEP: &str = "\u{1}DEEP\u{1}";

/// How `serde_json` encodes a placeholder.
fn encoded(placeholder: &str) -> String {
    Value::from(placeholder).to_string()
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the node (or, at the root, nothing).
    Remove(Index),
    /// Replaces the node with any JSON (a retyping, mostly).
    Replace(Index, Value),
    /// Replaces the node with a number no field can hold.
    Huge(Index, &'static str),
    /// Replaces the node with `depth` nested arrays.
    Deep(Index, usize),
    /// Replaces a string node with its text as a number, or anything else with a string.
    Retype(Index),
}

fn arb_mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Remove),
        3 => (any::<Index>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => (
            any::<Index>(),
            select(vec![
                "1e400",
                "-1e400",
                "123456789012345678901234567890",
                "18446744073709551616",
                "-9223372036854775809",
                "4294967296",
                "0.000000000000000000000000000000000000001e-400",
            ])
        )
            .prop_map(|(i, h)| Mutation::Huge(i, h)),
        1 => (any::<Index>(), select(vec![100usize, 127, 128, 129, 1000, 100_000]))
            .prop_map(|(i, d)| Mutation::Deep(i, d)),
        2 => any::<Index>().prop_map(Mutation::Retype),
    ]
    .boxed()
}

/// Applies the mutations to `value` and encodes it.
fn mutate(mut value: Value, mutations: &[Mutation]) -> String {
    let mut huge = None;
    let mut deep = None;
    for m in mutations {
        let mut all = Vec::new();
        paths(&value, &mut Vec::new(), &mut all);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match m {
            Mutation::Remove(i) => {
                let path = pick(i);
                if let Some((last, parent)) = path.split_last() {
                    match (node_mut(&mut value, parent), last) {
                        (Some(Value::Object(map)), Seg::Key(k)) => {
                            map.remove(k);
                        }
                        (Some(Value::Array(items)), Seg::At(n)) => {
                            items.remove(*n);
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Replace(i, v) => {
                if let Some(node) = node_mut(&mut value, &pick(i)) {
                    *node = v.clone();
                }
            }
            Mutation::Huge(i, h) => {
                if let Some(node) = node_mut(&mut value, &pick(i)) {
                    *node = Value::from(HUGE);
                    huge = Some(*h);
                }
            }
            Mutation::Deep(i, d) => {
                if let Some(node) = node_mut(&mut value, &pick(i)) {
                    *node = Value::from(DEEP);
                    deep = Some(*d);
                }
            }
            Mutation::Retype(i) => {
                if let Some(node) = node_mut(&mut value, &pick(i)) {
                    *node = match &*node {
                        Value::String(s) => s
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(json!(s.len()), Value::Number),
                        other => Value::String(other.to_string()),
                    };
                }
            }
        }
    }
    let mut text = value.to_string();
    if let Some(h) = huge {
        text = text.replace(&encoded(HUGE), h);
    }
    if let Some(d) = deep {
        text = text.replace(
            &encoded(DEEP),
            &format!("{}0{}", "[".repeat(d), "]".repeat(d)),
        );
    }
    text
}

/// Edits of the text itself: cut short, a character dropped or inserted, a duplicate `type`.
#[derive(Debug, Clone)]
enum TextEdit {
    Truncate(Index),
    Delete(Index),
    Insert(Index, char),
    DuplicateType(&'static str),
}

fn arb_text_edit() -> BoxedStrategy<TextEdit> {
    prop_oneof![
        any::<Index>().prop_map(TextEdit::Truncate),
        any::<Index>().prop_map(TextEdit::Delete),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| TextEdit::Insert(i, c)),
        select(ServerEvent::TYPES).prop_map(TextEdit::DuplicateType),
    ]
    .boxed()
}

fn edit(text: &str, e: &TextEdit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: &Index| i.index(chars.len().max(1));
    match e {
        TextEdit::Truncate(i) => chars[..at(i)].iter().collect(),
        TextEdit::Delete(i) => {
            let mut c = chars.clone();
            if !c.is_empty() {
                c.remove(at(i));
            }
            c.into_iter().collect()
        }
        TextEdit::Insert(i, ch) => {
            let mut c = chars.clone();
            c.insert(at(i).min(c.len()), *ch);
            c.into_iter().collect()
        }
        TextEdit::DuplicateType(t) => text.replacen('{', &format!("{{\"type\":\"{t}\","), 1),
    }
}

/// Valid sample frames, mutated: "near-valid" events.
fn arb_near_valid() -> BoxedStrategy<String> {
    (
        select(SAMPLES.clone()),
        prop::collection::vec(arb_mutation(), 1..4),
        prop::option::weighted(0.3, arb_text_edit()),
    )
        .prop_map(|(sample, mutations, text_edit)| {
            let text = mutate(sample, &mutations);
            match text_edit {
                Some(e) => edit(&text, &e),
                None => text,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The decoder

/// What every frame must satisfy: no panic; a decoded event re-encodes into a frame that
/// decodes to the same event; a rejected one says why.
fn check_decoder(text: &str) -> Result<(), TestCaseError> {
    match ServerEvent::from_json(text) {
        Ok(event) => {
            let encoded = event.to_json();
            let again = ServerEvent::from_json(&encoded)
                .map_err(|e| TestCaseError::fail(format!("re-encoding {encoded} fails: {e}")))?;
            prop_assert_eq!(&again, &event);
            // The `Value` path agrees with the text path on what it accepts.
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                prop_assert_eq!(ServerEvent::from_value(value).ok(), Some(event));
            }
        }
        Err(e) => {
            prop_assert!(!e.message.is_empty());
            let error = Error::from(e);
            prop_assert!(matches!(error, Error::Protocol(_)), "{error:?}");
            prop_assert!(error.to_string().contains("cannot decode"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn decoder_survives_arbitrary_text(text in ".{0,256}") {
        check_decoder(&text)?;
    }

    #[test]
    fn decoder_survives_arbitrary_bytes_as_text(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_decoder(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn decoder_survives_arbitrary_json(value in arb_json()) {
        check_decoder(&value.to_string())?;
    }

    #[test]
    fn decoder_survives_known_types_with_random_bodies(value in arb_event_value()) {
        check_decoder(&value.to_string())?;
        // `from_value` on the same object agrees (it never panics either).
        let t = value["type"].as_str().map(str::to_owned);
        match ServerEvent::from_value(value) {
            Ok(event) => prop_assert_eq!(Some(event.event_type().to_owned()), t),
            Err(e) => prop_assert_eq!(e.event_type, t),
        }
    }

    #[test]
    fn decoder_survives_near_valid_events(text in arb_near_valid()) {
        check_decoder(&text)?;
    }

    #[test]
    fn unknown_fields_never_change_a_known_event(
        sample in select(SAMPLES.clone()),
        extra in prop::collection::vec(("x_[a-z]{1,8}", arb_json()), 1..4),
    ) {
        let original = ServerEvent::from_json(&sample.to_string()).unwrap();
        let mut value = sample;
        for (k, v) in extra {
            value.as_object_mut().unwrap().insert(k, v);
        }
        prop_assert_eq!(ServerEvent::from_json(&value.to_string()).unwrap(), original);
    }
}

#[test]
fn every_known_type_has_a_sample_that_roundtrips() {
    for t in ServerEvent::TYPES {
        assert!(
            SAMPLES.iter().any(|s| s["type"] == *t),
            "tests/data/server_events.jsonl has no `{t}`"
        );
    }
    for sample in SAMPLES.iter() {
        let text = sample.to_string();
        let event = ServerEvent::from_json(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(!matches!(event, ServerEvent::Unknown { .. }), "{text}");
        assert_eq!(Some(event.event_type()), sample["type"].as_str());
        let encoded: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(&encoded, sample, "re-encodes as received");
        assert_eq!(ServerEvent::from_json(&event.to_json()).unwrap(), event);
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_errors_not_crashes() {
    for depth in [127usize, 128, 129, 10_000, 1_000_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for text in [
            nested.clone(),
            format!(r#"{{"type":"response.done","response":{nested}}}"#),
            format!(r#"{{"type":"x.unknown","a":{nested}}}"#),
            format!(r#"{{"a":{nested},"type":"error"}}"#),
        ] {
            // Nesting past serde_json's recursion limit (128) is an error, never a stack overflow.
            if let Ok(event) = ServerEvent::from_json(&text) {
                assert!(
                    depth < 128,
                    "depth {depth} accepted as {}",
                    event.event_type()
                );
            }
        }
    }
    for number in ["1e400", "18446744073709551616", "-1", "1.5", "4294967296"] {
        let text = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":{number},"delta":""}}"#
        );
        let err = ServerEvent::from_json(&text).expect_err(number);
        assert_eq!(
            err.event_type.as_deref(),
            Some("response.output_audio.delta")
        );
    }
}

// ---------------------------------------------------------------------------------------
// A live session fed junk

/// Event types that can add (at most) one item to the history.
const CREATING: &[&str] = &[
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.done",
    "conversation.item.retrieved",
    "response.output_audio_transcript.delta",
    "response.output_text.delta",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
];

#[derive(Debug, Clone)]
enum Junk {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

/// Well-formed events about things that do not exist, or in the wrong order.
fn arb_stray_event() -> BoxedStrategy<Value> {
    let id = || "(ghost|r1|item_1|call_[0-9])_[0-9]{0,2}";
    let ci = 0u32..3;
    prop_oneof![
        (id(), id(), ".{0,12}")
            .prop_map(|(r, i, d)| ev::transcript_delta(&r, &i, &d)),
        (id(), id(), ci.clone(), ".{0,12}").prop_map(|(r, i, c, d)| json!({
            "type": "response.output_text.delta", "response_id": r, "item_id": i,
            "output_index": 0, "content_index": c, "delta": d})),
        (id(), id(), prop_oneof![
            "[A-Za-z0-9+/]{0,16}={0,2}",
            "[^A-Za-z0-9+/=]{1,8}",
            Just("!!!not base64!!!".to_owned()),
        ]).prop_map(|(r, i, d)| json!({
            "type": "response.output_audio.delta", "response_id": r, "item_id": i,
            "output_index": 0, "content_index": 0, "delta": d})),
        (id(), id()).prop_map(|(r, i)| ev::audio_done(&r, &i)),
        (id(), select(vec!["completed", "cancelled", "failed", "incomplete", "weird"]))
            .prop_map(|(r, s)| ev::response_done(&r, s)),
        id().prop_map(|r| ev::response_created(&r)),
        id().prop_map(|i| json!({"type": "conversation.item.deleted", "item_id": i})),
        (id(), any::<u32>()).prop_map(|(i, ms)| json!({
            "type": "conversation.item.truncated", "item_id": i, "content_index": 0, "audio_end_ms": ms})),
        (id(), id(), "[0-9]", prop_oneof![Just("get_weather".to_owned()), "[a-z_]{1,12}"], ".{0,16}")
            .prop_map(|(r, i, c, name, args)| ev::function_call(&r, &i, &format!("call_{c}"), &name, &args)),
        (id(), ci.clone(), ".{0,12}").prop_map(|(i, c, d)| json!({
            "type": "conversation.item.input_audio_transcription.delta", "item_id": i,
            "content_index": c, "delta": d})),
        (id(), ci, ".{0,12}").prop_map(|(i, c, t)| json!({
            "type": "conversation.item.input_audio_transcription.completed", "item_id": i,
            "content_index": c, "transcript": t})),
        id().prop_map(|i| json!({
            "type": "conversation.item.input_audio_transcription.failed", "item_id": i,
            "content_index": 0, "error": {"type": "transcription_error", "message": "no"}})),
        id().prop_map(|i| ev::speech_started(&i)),
        id().prop_map(|i| json!({"type": "input_audio_buffer.speech_stopped", "item_id": i, "audio_end_ms": 5})),
        ("[a-z_]{1,20}", ".{0,20}", prop::option::of("[a-z_]{1,8}"))
            .prop_map(|(code, msg, eid)| ev::error(&code, &msg, eid.as_deref())),
    ]
    .boxed()
}

fn arb_junk() -> BoxedStrategy<Junk> {
    prop_oneof![
        2 => ".{0,64}".prop_map(Junk::Text),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Junk::Binary),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Junk::Ping),
        4 => arb_near_valid().prop_map(Junk::Text),
        3 => arb_event_value().prop_map(|v| Junk::Text(v.to_string())),
        6 => arb_stray_event().prop_map(|v| Junk::Text(v.to_string())),
        1 => select(vec![130usize, 5000]).prop_map(|d| Junk::Text(format!(
            r#"{{"type":"response.done","response":{}{}}}"#, "[".repeat(d), "]".repeat(d)))),
    ]
    .boxed()
}

fn tool_agent() -> RealtimeAgent {
    RealtimeAgent::new("Assistant").tool(FunctionTool::new(
        "get_weather",
        "Current weather in a city.",
        |a: Value| async move { Ok::<_, String>(format!("Sunny: {a}")) },
    ))
}

async fn session_on(server_url: &str) -> RealtimeSession {
    let model = realtime_agents::model::OpenAIRealtimeWebSocketModel::builder()
        .url(server_url)
        .api_key("sk-test-secret")
        .build();
    RealtimeRunner::new(tool_agent())
        .model(model)
        .config(RealtimeRunConfig::new())
        .run(())
        .await
        .expect("session starts")
}

fn error_message(e: &E) -> Option<String> {
    match e {
        E::Error { error } => Some(error.to_string()),
        _ => None,
    }
}

async fn junk_then_a_valid_turn(junk: Vec<Junk>) -> Result<(), TestCaseError> {
    let server = FrameServer::start().await;
    let mut session = session_on(&server.url).await;
    let mut undecodable = 0;
    let mut binary = 0;
    let mut creating = 0;
    for j in junk {
        match j {
            Junk::Text(text) => {
                match ServerEvent::from_json(&text) {
                    Err(_) => undecodable += 1,
                    Ok(e) if CREATING.contains(&e.event_type()) => creating += 1,
                    Ok(_) => {}
                }
                server.frame(Message::text(text));
            }
            Junk::Binary(bytes) => {
                binary += 1;
                server.frame(Message::binary(bytes));
            }
            Junk::Ping(bytes) => server.frame(Message::Ping(bytes.into())),
        }
    }
    // After the junk, a normal turn still works.
    for event in [
        ev::response_created("resp_final"),
        ev::assistant_item("item_final", None, "in_progress"),
        ev::transcript_delta("resp_final", "item_final", "still here"),
        ev::audio_delta("resp_final", "item_final", 20),
        ev::audio_done("resp_final", "item_final"),
        ev::response_done("resp_final", "completed"),
    ] {
        server.send(event);
    }
    let mut events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "still here"),
    )
    .await;
    let start = events.len();
    events.extend(until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await);
    let tail = &events[start..];
    prop_assert!(
        tail.iter()
            .any(|e| matches!(e, E::Audio { item_id, .. } if item_id == "item_final")),
        "{tail:#?}"
    );
    prop_assert!(
        tail.iter().any(|e| matches!(e, E::Usage { .. })),
        "no usage: {:#?}",
        tail
    );
    let agent_starts = events
        .iter()
        .rposition(|e| matches!(e, E::AgentStart { .. }));
    prop_assert!(agent_starts.is_some());

    // Every undecodable text frame and every binary frame became exactly one error event.
    let messages: Vec<String> = events.iter().filter_map(error_message).collect();
    let decode_errors = messages
        .iter()
        .filter(|m| m.starts_with("protocol error: cannot decode"))
        .count();
    let binary_errors = messages
        .iter()
        .filter(|m| m.contains("unexpected binary frame"))
        .count();
    prop_assert_eq!(decode_errors, undecodable, "{:#?}", messages);
    prop_assert_eq!(binary_errors, binary, "{:#?}", messages);

    // The history grows only by what the frames created: at most one item per creating frame,
    // plus the final turn's item.
    let history = session.handle().history().await.expect("history");
    prop_assert!(
        history.len() <= creating + 1,
        "{} items from {creating} creating frames: {history:#?}",
        history.len()
    );
    if creating == 0 {
        prop_assert_eq!(history.len(), 1, "{:#?}", history);
    }
    prop_assert!(session.history().len() <= creating + 1);

    session.close().await;
    let rest = until_end(&mut session).await;
    prop_assert!(
        matches!(rest.last(), Some(E::Closed { error: None })),
        "{rest:#?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(cases(40))]

    #[test]
    fn session_survives_junk_frames(junk in prop::collection::vec(arb_junk(), 1..40)) {
        RT.block_on(junk_then_a_valid_turn(junk))?;
    }
}

/// Events that refer to nothing the session knows leave no trace in the history and produce
/// the errors they should; the session answers the next turn as usual.
#[tokio::test]
async fn events_about_unknown_things_create_nothing() {
    let server = FrameServer::start().await;
    let mut session = session_on(&server.url).await;
    for event in [
        ev::response_done("never_created", "completed"),
        json!({"type": "conversation.item.deleted", "event_id": "e", "item_id": "nope"}),
        json!({"type": "conversation.item.truncated", "event_id": "e", "item_id": "nope", "content_index": 0, "audio_end_ms": 100}),
        ev::audio_done("nope", "nope"),
        json!({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "output_index": 0, "content_index": 0, "delta": "%%% not base64 %%%"}),
        ev::function_call("r_ghost", "fc_ghost", "call_ghost", "no_such_tool", "{}"),
        ev::response_done("r_ghost", "completed"),
        ev::speech_started("nope"),
        json!({"type": "rate_limits.updated", "rate_limits": []}),
        json!({"type": "brand.new.event", "payload": [1, 2, 3]}),
    ] {
        server.send(event);
    }
    server.frame(Message::binary(vec![0u8, 159, 146, 150]));
    server.send(ev::response_created("r1"));
    server.send(ev::transcript_delta("r1", "a1", "hello"));
    server.send(ev::response_done("r1", "completed"));
    let mut events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "hello"),
    )
    .await;
    events.extend(until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await);
    // The unknown tool's answer runs as a task: its error may come after the turn's end.
    if !events
        .iter()
        .filter_map(error_message)
        .any(|m| m.contains("no_such_tool"))
    {
        events.extend(
            until(&mut session, |e| {
                error_message(e).is_some_and(|m| m.contains("no_such_tool"))
            })
            .await,
        );
    }
    let messages: Vec<String> = events.iter().filter_map(error_message).collect();
    assert!(
        messages.iter().any(|m| m.contains("invalid base64 audio")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("no_such_tool")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("unexpected binary frame")),
        "{messages:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, E::HistoryDeleted { .. })),
        "nothing to delete: {events:#?}"
    );
    // The unknown tool was answered, so the model is not left waiting.
    let history = session.handle().history().await.unwrap();
    assert_eq!(history.len(), 1, "only the `a1` message: {history:#?}");
    assert_eq!(history[0].item_id(), "a1");
    session.close().await;
}

/// A transcript delta's `content_index` comes from the wire; it must not decide how much
/// memory the history allocates.
#[tokio::test]
async fn wire_content_index_does_not_size_the_history() {
    let server = FrameServer::start().await;
    let mut session = session_on(&server.url).await;
    server.send(
        json!({"type": "response.output_audio_transcript.delta", "response_id": "r",
        "item_id": "i", "output_index": 0, "content_index": 1_000_000, "delta": "x"}),
    );
    let _ = until(&mut session, |e| matches!(e, E::TranscriptDelta { .. })).await;
    let history = session.handle().history().await.unwrap();
    let parts = match &history[0] {
        realtime_agents::items::RealtimeItem::Message(m) => m.content.len(),
        other => panic!("{other:?}"),
    };
    assert!(parts <= 64, "one delta made {parts} content parts");
}

// ---------------------------------------------------------------------------------------
// Frame size limits

fn model_with_limit(
    url: &str,
    limit: usize,
) -> realtime_agents::model::OpenAIRealtimeWebSocketModel {
    realtime_agents::model::OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-test-secret")
        .max_frame_size(limit)
        .build()
}

async fn limited_session(url: &str, limit: usize) -> RealtimeSession {
    RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model_with_limit(url, limit))
        .run(())
        .await
        .expect("session starts")
}

/// A valid event frame of exactly `len` bytes.
fn event_of_len(len: usize) -> String {
    let head = r#"{"type":"x.padding","pad":""#;
    let tail = r#""}"#;
    format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
}

fn assert_too_large(error: &Error, limit: usize) {
    let shown = error.to_string();
    assert!(matches!(error, Error::Protocol(_)), "{error:?}");
    assert!(shown.contains("too large"), "{shown}");
    assert!(
        shown.contains(&format!("{limit} bytes")),
        "names the limit: {shown}"
    );
    assert!(
        shown.contains("max_frame_size"),
        "names the setting: {shown}"
    );
}

#[tokio::test]
async fn oversized_frame_ends_the_session_with_a_clear_error() {
    const LIMIT: usize = 64 << 10;
    let server = FrameServer::start().await;
    let mut session = limited_session(&server.url, LIMIT).await;
    // Up to the limit is fine...
    server.frame(Message::text(event_of_len(LIMIT)));
    server.send(ev::speech_started("ok"));
    let _ = until(&mut session, |e| matches!(e, E::InputSpeechStarted { .. })).await;
    // ...one byte more is not.
    server.frame(Message::text(event_of_len(LIMIT + 1)));
    let events = until_end(&mut session).await;
    let errors: Vec<&Error> = events
        .iter()
        .filter_map(|e| match e {
            E::Error { error } => Some(error),
            _ => None,
        })
        .collect();
    assert!(
        errors.is_empty(),
        "the end is reported once, in Closed: {events:#?}"
    );
    match events.last() {
        Some(E::Closed { error: Some(error) }) => assert_too_large(error, LIMIT),
        other => panic!("expected Closed with the error, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_fragmented_message_ends_the_session_with_a_clear_error() {
    const LIMIT: usize = 64 << 10;
    let server = FrameServer::start().await;
    let mut session = limited_session(&server.url, LIMIT).await;
    // Three 30 KiB fragments: each frame is under the limit, the message is not.
    let text = event_of_len(90 << 10).into_bytes();
    let chunks: Vec<&[u8]> = text.chunks(30 << 10).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        server.frame(Message::Frame(frame));
    }
    let events = until_end(&mut session).await;
    match events.last() {
        Some(E::Closed { error: Some(error) }) => assert_too_large(error, LIMIT),
        other => panic!("expected Closed with the error, got {other:?}: {events:#?}"),
    }
}

/// `max_frame_size` bounds what the server sends; what the client sends is not cut or
/// refused by it.
#[tokio::test]
async fn outgoing_frames_are_not_bound_by_max_frame_size() {
    const LIMIT: usize = 64 << 10;
    let server = FrameServer::start().await;
    let session = limited_session(&server.url, LIMIT).await;
    let audio = vec![7u8; 3 * LIMIT];
    session.send_audio(audio.clone(), false).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let append = loop {
        let found = server.received().into_iter().find_map(|m| match m {
            Message::Text(t) if t.contains("input_audio_buffer.append") => Some(t.to_string()),
            _ => None,
        });
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no append arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let value: Value = serde_json::from_str(&append).unwrap();
    let sent = base64::engine::general_purpose::STANDARD
        .decode(value["audio"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, audio);
    session.close().await;
}

/// A server that refuses a client frame as too big closes with 1009; the session ends with
/// that code.
#[tokio::test]
async fn server_refusing_a_client_frame_as_too_big_ends_the_session_with_1009() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "input_audio_buffer.append" {
            out.close(1009, "message too big");
        }
    })
    .await;
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(server.model())
        .run(())
        .await
        .unwrap();
    session.send_audio(vec![0u8; 4800], false).await.unwrap();
    let events = until_end(&mut session).await;
    match events.last() {
        Some(E::Closed {
            error: Some(Error::Closed { code, reason }),
        }) => {
            assert_eq!(*code, Some(1009));
            assert_eq!(reason, "message too big");
        }
        other => panic!("{other:?}"),
    }
}

/// A text frame that is not UTF-8 breaks the WebSocket protocol itself: the session ends
/// with a protocol error, without a panic.
#[tokio::test]
async fn invalid_utf8_text_frame_ends_the_session_with_a_protocol_error() {
    let server = FrameServer::start().await;
    let mut session = session_on(&server.url).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    server.frame(Message::Frame(frame));
    let events = until_end(&mut session).await;
    match events.last() {
        Some(E::Closed { error: Some(error) }) => {
            assert!(matches!(error, Error::Protocol(_)), "{error:?}");
            assert!(error.to_string().contains("UTF-8"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}
