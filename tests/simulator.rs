//! Integration tests of the Realtime API simulator with a raw WebSocket client.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use realtime_agents::simulator::speech::encode_text;
use realtime_agents::simulator::{Simulator, SimulatorBuilder};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(5);

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(sim: &Simulator) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{}?model=gpt-realtime", sim.url()))
            .await
            .expect("connect");
        let mut client = Self { ws };
        assert_eq!(client.next().await["type"], "session.created");
        client
    }

    async fn send(&mut self, event: Value) {
        self.ws
            .send(Message::text(event.to_string()))
            .await
            .expect("send");
    }

    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a server event")
                .expect("connection ended")
                .expect("read error");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).expect("server sent invalid JSON");
            }
        }
    }

    /// Events up to and including the first one of type `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = event["type"] == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The next event within `within`, if any.
    async fn maybe_next(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.next()).await.ok()
    }

    async fn user_text(&mut self, text: &str) {
        self.send(
            json!({"type": "conversation.item.create", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": text}]}}),
        )
        .await;
        let events = self.until("conversation.item.done").await;
        assert_eq!(events.len(), 2, "{events:?}");
    }

    async fn truncate(&mut self, item_id: &str, audio_end_ms: u64) {
        self.send(
            json!({"type": "conversation.item.truncate", "item_id": item_id,
            "content_index": 0, "audio_end_ms": audio_end_ms}),
        )
        .await;
    }

    async fn update(&mut self, session: Value) -> Value {
        self.send(json!({"type": "session.update", "session": session}))
            .await;
        let event = self.next().await;
        assert_eq!(event["type"], "session.updated", "{event}");
        event["session"].clone()
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}})
}

async fn fast() -> Simulator {
    Simulator::builder().speed(0.0).start().await.unwrap()
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

async fn append_audio(client: &mut Client, bytes: &[u8]) {
    for chunk in bytes.chunks(960 * 5) {
        client
            .send(json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(chunk)}))
            .await;
    }
}

#[tokio::test]
async fn session_created_is_first_with_ga_defaults() {
    let sim = fast().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?model=gpt-realtime-2.1", sim.url()))
            .await
            .unwrap();
    let frame = ws.next().await.unwrap().unwrap();
    let event: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(event["type"], "session.created");
    assert!(event["event_id"].as_str().unwrap().starts_with("event_"));
    let s = &event["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["model"], "gpt-realtime-2.1");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["instructions"], "");
    assert_eq!(s["tools"], json!([]));
    assert_eq!(s["tool_choice"], "auto");
    assert_eq!(
        s["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert!(s["audio"]["input"]["transcription"].is_null());
    let td = &s["audio"]["input"]["turn_detection"];
    assert_eq!(td["type"], "server_vad");
    assert_eq!(td["threshold"], 0.5);
    assert_eq!(td["prefix_padding_ms"], 300);
    assert_eq!(td["silence_duration_ms"], 500);
    assert_eq!(td["create_response"], true);
    assert_eq!(td["interrupt_response"], true);
    assert_eq!(s["audio"]["output"]["voice"], "alloy");
    assert_eq!(s["audio"]["output"]["speed"], 1.0);
    assert_eq!(sim.connections(), 1);
}

#[tokio::test]
async fn session_update_merges_and_answers_with_full_session() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    let s = c
        .update(json!({"type": "realtime", "instructions": "Be brief.",
            "tools": [weather_tool()],
            "audio": {"input": {"turn_detection": null},
                      "output": {"voice": "ash"}}}))
        .await;
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(s["tools"][0]["name"], "get_weather");
    assert!(s["audio"]["input"]["turn_detection"].is_null());
    assert_eq!(s["audio"]["output"]["voice"], "ash");
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    // Absent fields keep their values.
    let s = c
        .update(
            json!({"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}}),
        )
        .await;
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(s["audio"]["output"]["voice"], "ash");
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert!(s["audio"]["input"]["turn_detection"].is_null());
}

#[tokio::test]
async fn session_update_without_type_is_rejected_and_not_applied() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.send(json!({"type": "session.update", "event_id": "evt_1",
        "session": {"instructions": "ignored"}}))
        .await;
    let error = c.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "missing_required_parameter");
    assert_eq!(error["error"]["param"], "session.type");
    assert_eq!(error["error"]["event_id"], "evt_1");
    // Beta-shaped fields are unknown parameters.
    c.send(json!({"type": "session.update", "event_id": "evt_2",
        "session": {"type": "realtime", "input_audio_format": "pcm16"}}))
        .await;
    let error = c.next().await;
    assert_eq!(error["error"]["code"], "unknown_parameter");
    assert_eq!(error["error"]["event_id"], "evt_2");
    let s = c.update(json!({"type": "realtime"})).await;
    assert_eq!(s["instructions"], "");
}

#[tokio::test]
async fn text_turn_has_the_ga_event_order() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "output_modalities": ["text"]}))
        .await;
    c.user_text("Hello there").await;
    c.send(json!({"type": "response.create", "event_id": "create_1"}))
        .await;
    let events = c.until("response.done").await;
    events
        .iter()
        .for_each(|e| assert_ne!(e["type"], "error", "{e}"));
    let t = types(&events);
    let deltas = t
        .iter()
        .filter(|t| **t == "response.output_text.delta")
        .count();
    assert_eq!(deltas, 11, "one delta per word: {t:?}");
    let mut expected = vec![
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]);
    assert_eq!(t, expected);
    assert_eq!(c.next().await["type"], "rate_limits.updated");

    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        "Hello! I'm a simulated assistant. How can I help you today?"
    );
    let created = &events[0]["response"];
    assert_eq!(created["status"], "in_progress");
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["id"], created["id"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["type"], "message");
    assert_eq!(done["output"][0]["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(done["output"][0]["content"][0]["text"], text);
    let usage = &done["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0);
    assert!(usage["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
    assert!(usage["input_token_details"]["cached_tokens"].is_u64());
    assert!(usage["output_token_details"]["text_tokens"].is_u64());
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
}

#[tokio::test]
async fn tool_call_then_spoken_answer_with_the_output() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "tools": [weather_tool()],
        "audio": {"input": {"turn_detection": null}}}))
        .await;
    c.user_text("What's the weather in Paris?").await;
    c.send(json!({"type": "response.create"})).await;
    let events = c.until("response.done").await;
    let t = types(&events);
    let args_deltas = t
        .iter()
        .filter(|t| **t == "response.function_call_arguments.delta")
        .count();
    assert!((1..=3).contains(&args_deltas), "{t:?}");
    let mut expected = vec![
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.function_call_arguments.delta",
        args_deltas,
    ));
    expected.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]);
    assert_eq!(t, expected);
    let added = &events[1]["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["status"], "in_progress");
    assert_eq!(added["arguments"], "");
    let args_done = &events[3 + args_deltas];
    assert_eq!(args_done["name"], "get_weather");
    let call_id = args_done["call_id"].as_str().unwrap().to_string();
    assert!(call_id.starts_with("call_"));
    let args: Value = serde_json::from_str(args_done["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, args_done["arguments"].as_str().unwrap());
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["output"][0]["status"], "completed");
    assert_eq!(done["output"][0]["call_id"], call_id.as_str());
    assert_eq!(c.next().await["type"], "rate_limits.updated");

    c.send(
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": call_id, "output": "Sunny, 22 degrees in Paris"}}),
    )
    .await;
    c.until("conversation.item.done").await;
    c.send(json!({"type": "response.create"})).await;
    let events = c.until("response.done").await;
    let audio: Vec<usize> = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .collect();
    assert!(audio.len() > 50, "about 3 s of audio");
    assert!(audio.iter().all(|&n| n == 960), "20 ms PCM16 deltas");
    let transcript: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio_transcript.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        transcript,
        "Here is what I found: Sunny, 22 degrees in Paris."
    );
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["type"], "output_audio");
    assert_eq!(done["output"][0]["content"][0]["transcript"], transcript);
    // Transcript deltas lead the audio where their word starts.
    let first_audio = events
        .iter()
        .position(|e| e["type"] == "response.output_audio.delta")
        .unwrap();
    let first_word = events
        .iter()
        .position(|e| e["type"] == "response.output_audio_transcript.delta")
        .unwrap();
    assert!(first_word < first_audio);
}

/// Asks, without VAD, for a response that calls `get_weather`.
async fn ask_for_the_weather(c: &mut Client) {
    c.update(json!({"type": "realtime", "tools": [weather_tool()],
        "audio": {"input": {"turn_detection": null}}}))
        .await;
    c.user_text("What's the weather in Paris?").await;
    c.send(json!({"type": "response.create"})).await;
}

#[tokio::test]
async fn delayed_tool_response_done_stays_active_until_it_arrives() {
    let delay = Duration::from_millis(300);
    let sim = Simulator::builder()
        .speed(0.0)
        .tool_response_done_delay(delay)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(&sim).await;
    ask_for_the_weather(&mut c).await;
    let call = c.until("conversation.item.done").await;
    let call_done = Instant::now();
    let t = types(&call);
    assert!(
        t.contains(&"response.function_call_arguments.done"),
        "{t:?}"
    );
    assert_eq!(
        t[t.len() - 2..],
        ["response.output_item.done", "conversation.item.done"]
    );
    let call_id = call.last().unwrap()["item"]["call_id"].clone();
    // The client runs the tool now, before response.done: the response is still active...
    c.send(json!({"type": "response.create", "event_id": "too_early"}))
        .await;
    // ...but the tool's output can already join the conversation.
    c.send(
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": call_id, "output": "Sunny, 22 degrees in Paris"}}),
    )
    .await;
    let events = c.until("response.done").await;
    let done_after = call_done.elapsed();
    assert_eq!(
        types(&events),
        [
            "error",
            "conversation.item.added",
            "conversation.item.done",
            "response.done"
        ]
    );
    assert_eq!(
        events[0]["error"]["code"],
        "conversation_already_has_active_response"
    );
    assert_eq!(events[0]["error"]["event_id"], "too_early");
    assert_eq!(events[1]["item"]["type"], "function_call_output");
    let done = &events[3]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["call_id"], call_id);
    // Not a timing test: only that the delay was not skipped.
    assert!(
        done_after >= delay / 2,
        "response.done after {done_after:?}"
    );
    assert_eq!(c.next().await["type"], "rate_limits.updated");
    // Once done, the answer with the tool's output can be asked for.
    c.send(json!({"type": "response.create"})).await;
    let events = c.until("response.done").await;
    let answer = &events.last().unwrap()["response"]["output"][0]["content"][0];
    assert_eq!(
        answer["transcript"],
        "Here is what I found: Sunny, 22 degrees in Paris."
    );
}

#[tokio::test]
async fn second_response_create_while_active_is_rejected() {
    let sim = Simulator::start().await.unwrap(); // real-time pacing keeps the response active
    let mut c = Client::connect(&sim).await;
    c.user_text("Hello").await;
    c.send(json!({"type": "response.create", "event_id": "first"}))
        .await;
    c.until("response.created").await;
    c.send(json!({"type": "response.create", "event_id": "second"}))
        .await;
    let events = c.until("error").await;
    let error = &events.last().unwrap()["error"];
    assert_eq!(error["code"], "conversation_already_has_active_response");
    assert_eq!(error["event_id"], "second");
    c.send(json!({"type": "response.cancel"})).await;
    let done = c.until("response.done").await;
    assert_eq!(done.last().unwrap()["response"]["status"], "cancelled");
}

#[tokio::test]
async fn cancel_mid_response_stops_audio() {
    let sim = Simulator::builder().speed(2.0).start().await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.user_text("Tell me a story").await;
    c.send(json!({"type": "response.create"})).await;
    let mut deltas = 0;
    while deltas < 5 {
        if c.next().await["type"] == "response.output_audio.delta" {
            deltas += 1;
        }
    }
    c.send(json!({"type": "response.cancel", "event_id": "stop"}))
        .await;
    let events = c.until("response.done").await;
    let t = types(&events);
    let tail: Vec<&str> = t
        .iter()
        .copied()
        .filter(|t| !t.ends_with(".delta"))
        .collect();
    assert_eq!(
        tail,
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["status_details"],
        json!({"type": "cancelled", "reason": "client_cancelled"})
    );
    let item = &done["output"][0];
    assert_eq!(item["status"], "incomplete");
    let partial = item["content"][0]["transcript"].as_str().unwrap();
    assert!(partial.starts_with("Once"), "{partial}");
    assert!(partial.len() < 100, "{partial}");
    assert_eq!(c.next().await["type"], "rate_limits.updated");
    // Nothing more streams, and a second cancel has nothing to cancel.
    assert!(c.maybe_next(Duration::from_millis(200)).await.is_none());
    c.send(json!({"type": "response.cancel", "event_id": "again"}))
        .await;
    let error = c.next().await;
    assert_eq!(error["error"]["code"], "response_cancel_not_active");
    assert_eq!(error["error"]["event_id"], "again");
}

#[tokio::test]
async fn truncate_rules() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}}))
        .await;
    c.user_text("Hi").await;
    c.send(json!({"type": "response.create"})).await;
    let events = c.until("response.done").await;
    let bytes: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .sum();
    let audio_ms = bytes / 48;
    let done = &events.last().unwrap()["response"];
    let item_id = done["output"][0]["id"].as_str().unwrap().to_string();
    let full = done["output"][0]["content"][0]["transcript"]
        .as_str()
        .unwrap()
        .to_string();
    c.until("rate_limits.updated").await;

    c.send(
        json!({"type": "conversation.item.truncate", "event_id": "t1", "item_id": item_id,
        "content_index": 0, "audio_end_ms": audio_ms + 100}),
    )
    .await;
    let error = c.next().await["error"].clone();
    assert_eq!(error["event_id"], "t1");
    assert_eq!(
        error["message"],
        format!(
            "Audio content of {audio_ms}ms is already shorter than {}ms",
            audio_ms + 100
        )
    );

    let user_item = sim
        .client_events()
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .count();
    assert_eq!(user_item, 1);
    c.send(json!({"type": "conversation.item.retrieve", "item_id": "item_1"}))
        .await;
    let user = c.next().await;
    assert_eq!(user["item"]["role"], "user");
    c.send(
        json!({"type": "conversation.item.truncate", "event_id": "t2", "item_id": "item_1",
        "content_index": 0, "audio_end_ms": 0}),
    )
    .await;
    let error = c.next().await["error"].clone();
    assert_eq!(
        error["message"],
        "Only model output audio messages can be truncated"
    );
    assert_eq!(error["event_id"], "t2");

    c.send(
        json!({"type": "conversation.item.truncate", "item_id": item_id,
        "content_index": 0, "audio_end_ms": 1000}),
    )
    .await;
    let truncated = c.next().await;
    assert_eq!(truncated["type"], "conversation.item.truncated");
    assert_eq!(truncated["audio_end_ms"], 1000);
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}))
        .await;
    let retrieved = c.next().await;
    // The real API deletes a truncated part's transcript.
    assert_eq!(
        retrieved["item"]["content"][0]["transcript"], "",
        "{full:?}"
    );
    assert!(!full.is_empty());
    // The item is now 1000 ms long.
    c.send(
        json!({"type": "conversation.item.truncate", "item_id": item_id,
        "content_index": 0, "audio_end_ms": 1001}),
    )
    .await;
    assert_eq!(
        c.next().await["error"]["message"],
        "Audio content of 1000ms is already shorter than 1001ms"
    );
}

/// A story answered on a VAD-less connection: the assistant item's id, its full transcript
/// and the milliseconds of audio sent, once `response.done` and `rate_limits.updated` are in.
async fn story_item(c: &mut Client) -> (String, String, u64) {
    c.update(json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}}))
        .await;
    c.user_text("Tell me a story").await;
    c.send(json!({"type": "response.create"})).await;
    let mut events = c.until("response.done").await;
    c.until("rate_limits.updated").await;
    let bytes: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .sum();
    let done = events.pop().unwrap();
    let item = &done["response"]["output"][0];
    let transcript = item["content"][0]["transcript"].as_str().unwrap();
    let id = item["id"].as_str().unwrap().to_string();
    (id, transcript.to_string(), bytes as u64 / 48)
}

/// The text tokens of the context a `response.create` sees, from its `response.done` usage.
async fn context_text_tokens(c: &mut Client) -> u64 {
    c.send(
        json!({"type": "response.create", "response": {"conversation": "none",
        "output_modalities": ["text"]}}),
    )
    .await;
    let done = c.until("response.done").await.pop().unwrap();
    c.until("rate_limits.updated").await;
    done["response"]["usage"]["input_token_details"]["text_tokens"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn truncation_deletes_the_transcript_as_the_real_api_does() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    let (item_id, full, _) = story_item(&mut c).await;
    assert!(full.starts_with("Once upon a time"), "{full}");
    c.truncate(&item_id, 3000).await;
    // The GA event carries no transcript at all.
    let mut truncated = c.next().await;
    assert!(
        truncated["event_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{truncated}"
    );
    truncated.as_object_mut().unwrap().remove("event_id");
    assert_eq!(
        truncated,
        json!({"type": "conversation.item.truncated", "item_id": item_id,
            "content_index": 0, "audio_end_ms": 3000})
    );
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}))
        .await;
    let item = c.next().await["item"].clone();
    assert_eq!(item["role"], "assistant");
    assert_eq!(
        item["content"],
        json!([{"type": "output_audio", "transcript": ""}]),
        "not even the words heard before 3000 ms stay"
    );
    // The audio is still there, 3000 ms of it: it can be truncated again, not lengthened.
    c.truncate(&item_id, 3001).await;
    assert_eq!(
        c.next().await["error"]["message"],
        "Audio content of 3000ms is already shorter than 3001ms"
    );
}

#[tokio::test]
async fn the_model_no_longer_sees_a_truncated_transcript() {
    let sim = fast().await;
    // Two identical conversations; the first truncates the story at its very end, where
    // every word was heard: the transcript goes all the same.
    let mut cut = Client::connect(&sim).await;
    let mut kept = Client::connect(&sim).await;
    let (item_id, _, audio_ms) = story_item(&mut cut).await;
    story_item(&mut kept).await;
    cut.truncate(&item_id, audio_ms).await;
    assert_eq!(cut.next().await["type"], "conversation.item.truncated");
    let with_story = context_text_tokens(&mut kept).await;
    let without = context_text_tokens(&mut cut).await;
    // The story's transcript is about 700 characters: tens of tokens the context loses.
    assert!(
        without + 50 < with_story,
        "context tokens: {without} after truncation, {with_story} without"
    );
}

#[tokio::test]
async fn truncating_a_message_still_streaming_deletes_its_stored_transcript() {
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}}))
        .await;
    c.user_text("Tell me a story").await;
    c.send(json!({"type": "response.create"})).await;
    let mut item_id = String::new();
    let mut deltas = 0;
    while deltas < 25 {
        let event = c.next().await;
        if event["type"] == "response.output_audio.delta" {
            item_id = event["item_id"].as_str().unwrap().to_string();
            deltas += 1;
        }
    }
    // 25 deltas of 20 ms are out: truncate at 200 ms, then stop the response.
    c.truncate(&item_id, 200).await;
    c.send(json!({"type": "response.cancel"})).await;
    let events = c.until("response.done").await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "conversation.item.truncated"),
        "{:?}",
        types(&events)
    );
    // What the response generated is reported as such; the conversation keeps no words.
    let generated = events
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap();
    let partial = generated["item"]["content"][0]["transcript"]
        .as_str()
        .unwrap();
    assert!(partial.starts_with("Once"), "{partial}");
    let stored = events
        .iter()
        .find(|e| e["type"] == "conversation.item.done")
        .unwrap();
    assert_eq!(stored["item"]["id"], item_id.as_str());
    assert_eq!(stored["item"]["content"][0]["transcript"], "");
    c.until("rate_limits.updated").await;
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}))
        .await;
    let item = c.next().await["item"].clone();
    assert_eq!(item["content"][0]["transcript"], "");
    assert_eq!(item["status"], "incomplete");
}

#[tokio::test]
async fn server_vad_transcribes_test_speech_and_calls_the_tool() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "tools": [weather_tool()],
        "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}))
        .await;
    let text = "What's the weather in Paris?";
    let mut samples = vec![0i16; 2400]; // 100 ms of silence
    samples.extend(encode_text(text));
    samples.extend(vec![0i16; 24 * 700]); // 700 ms of silence ends the turn
    append_audio(&mut c, &pcm_bytes(&samples)).await;
    let events = c.until("response.done").await;
    let t = types(&events);
    assert_eq!(
        t[..6],
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.completed",
        ]
    );
    assert_eq!(events[0]["audio_start_ms"], 0); // 100 ms of speech start minus 300 ms padding
    let item_id = events[0]["item_id"].clone();
    assert_eq!(events[1]["item_id"], item_id);
    let end_ms = events[1]["audio_end_ms"].as_u64().unwrap();
    assert!((1_000..1_700).contains(&end_ms), "{end_ms}");
    assert_eq!(events[2]["item_id"], item_id);
    assert!(events[2]["previous_item_id"].is_null());
    assert_eq!(events[3]["item"]["role"], "user");
    assert_eq!(
        events[3]["item"]["content"],
        json!([{"type": "input_audio", "transcript": null}])
    );
    assert_eq!(events[5]["item_id"], item_id);
    assert_eq!(events[5]["content_index"], 0);
    assert_eq!(events[5]["transcript"], text);
    assert_eq!(t[6], "response.created");
    let call = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("a function call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], r#"{"city":"Paris"}"#);
    // The user item now carries its transcript.
    c.next().await; // rate_limits.updated
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}))
        .await;
    assert_eq!(c.next().await["item"]["content"][0]["transcript"], text);
}

#[tokio::test]
async fn speech_interrupts_an_active_response() {
    let sim = Simulator::start().await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.user_text("Tell me a story").await;
    c.send(json!({"type": "response.create"})).await;
    c.until("response.output_audio.delta").await;
    let mut samples = encode_text("stop");
    samples.extend(vec![0i16; 24 * 600]);
    append_audio(&mut c, &pcm_bytes(&samples)).await;
    let events = c.until("response.done").await;
    let started = events
        .iter()
        .position(|e| e["type"] == "input_audio_buffer.speech_started")
        .expect("speech_started");
    let done = &events.last().unwrap()["response"];
    assert!(started < events.len() - 1);
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["status_details"]["reason"], "turn_detected");
    // The user's turn is then committed and answered.
    c.until("input_audio_buffer.committed").await;
    c.until("response.created").await;
}

#[tokio::test]
async fn manual_commit_needs_100_ms_and_clear_empties_the_buffer() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}}))
        .await;
    append_audio(&mut c, &pcm_bytes(&vec![0i16; 24 * 60])).await;
    c.send(json!({"type": "input_audio_buffer.commit", "event_id": "c1"}))
        .await;
    let error = c.next().await["error"].clone();
    assert_eq!(error["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error["event_id"], "c1");
    c.send(json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(c.next().await["type"], "input_audio_buffer.cleared");
    append_audio(&mut c, &pcm_bytes(&vec![0i16; 24 * 2400])).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    let events = c.until("conversation.item.done").await;
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done"
        ]
    );
    // No automatic response with VAD off; the transcript describes the audio.
    c.send(json!({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        .await;
    let events = c.until("response.done").await;
    assert_eq!(
        events.last().unwrap()["response"]["output"][0]["content"][0]["text"],
        "You said: (2.4 seconds of audio)."
    );
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let sim = SimulatorBuilder::default()
        .speed(0.0)
        .require_api_key("sk-good")
        .start()
        .await
        .unwrap();
    let request = |auth: Option<(&'static str, &str)>, protocols: Option<&str>| {
        let mut request = sim.url().into_client_request().unwrap();
        if let Some((name, value)) = auth {
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        if let Some(p) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
        }
        request
    };
    for bad in [
        request(None, None),
        request(Some(("authorization", "Bearer sk-bad")), None),
        request(None, Some("realtime, openai-insecure-api-key.sk-bad")),
    ] {
        match tokio_tungstenite::connect_async(bad).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], "invalid_api_key");
            }
            other => panic!("expected HTTP 401, got {other:?}"),
        }
    }
    assert_eq!(sim.connections(), 0);
    let good = [
        request(Some(("authorization", "Bearer sk-good")), None),
        request(Some(("api-key", "sk-good")), None),
        request(None, Some("realtime, openai-insecure-api-key.sk-good")),
    ];
    for (i, good) in good.into_iter().enumerate() {
        let (mut ws, response) = tokio_tungstenite::connect_async(good).await.unwrap();
        assert_eq!(response.status(), 101);
        if i == 2 {
            assert_eq!(response.headers()["sec-websocket-protocol"], "realtime");
        }
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("session.created"));
    }
    assert_eq!(sim.connections(), 3);
}

#[tokio::test]
async fn malformed_events_get_errors_and_the_connection_stays_open() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.ws.send(Message::text("{not json")).await.unwrap();
    let error = c.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "invalid_json");
    c.send(json!({"type": "nonsense.event", "event_id": "x1"}))
        .await;
    let error = c.next().await["error"].clone();
    assert_eq!(error["code"], "invalid_value");
    assert_eq!(error["param"], "type");
    assert_eq!(error["event_id"], "x1");
    c.send(json!({"type": "conversation.item.create", "event_id": "x2"}))
        .await;
    let error = c.next().await["error"].clone();
    assert_eq!(error["code"], "missing_required_parameter");
    assert_eq!(error["param"], "item");
    c.send(
        json!({"type": "conversation.item.create", "item": {"type": "message",
        "role": "assistant", "content": [{"type": "text", "text": "beta spelling"}]}}),
    )
    .await;
    assert_eq!(c.next().await["error"]["code"], "invalid_value");
    c.ws.send(Message::Ping(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, c.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(vec![1, 2, 3].into()));
    let s = c
        .update(json!({"type": "realtime", "instructions": "still here"}))
        .await;
    assert_eq!(s["instructions"], "still here");
    // Every parsed client event was recorded, in order.
    let recorded: Vec<Value> = sim
        .client_events()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        recorded,
        [
            "nonsense.event",
            "conversation.item.create",
            "conversation.item.create",
            "session.update"
        ]
    );
}

#[tokio::test]
async fn items_insert_after_previous_item_and_can_be_deleted() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.user_text("first").await;
    c.send(
        json!({"type": "conversation.item.create", "previous_item_id": "root",
        "item": {"id": "sys", "type": "message", "role": "system",
                 "content": [{"type": "input_text", "text": "be nice"}]}}),
    )
    .await;
    let added = c.next().await;
    assert_eq!(added["type"], "conversation.item.added");
    assert!(added["previous_item_id"].is_null());
    assert_eq!(added["item"]["id"], "sys");
    assert_eq!(added["item"]["object"], "realtime.item");
    assert_eq!(added["item"]["status"], "completed");
    c.next().await;
    c.send(json!({"type": "conversation.item.create", "previous_item_id": "sys",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]}}))
        .await;
    assert_eq!(c.next().await["previous_item_id"], "sys");
    c.next().await;
    c.send(json!({"type": "conversation.item.create", "previous_item_id": "nope",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}}))
        .await;
    assert_eq!(c.next().await["error"]["code"], "item_not_found");
    c.send(json!({"type": "conversation.item.delete", "item_id": "sys"}))
        .await;
    let deleted = c.next().await;
    assert_eq!(deleted["type"], "conversation.item.deleted");
    assert_eq!(deleted["item_id"], "sys");
    c.send(json!({"type": "conversation.item.delete", "item_id": "sys"}))
        .await;
    assert_eq!(c.next().await["type"], "error");
}

#[tokio::test]
async fn g711_output_and_voice_lock() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    c.update(
        json!({"type": "realtime", "audio": {"input": {"turn_detection": null},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "coral"}}}),
    )
    .await;
    c.user_text("hello").await;
    c.send(json!({"type": "response.create"})).await;
    let events = c.until("response.done").await;
    let sizes: Vec<usize> = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| BASE64.decode(e["delta"].as_str().unwrap()).unwrap().len())
        .collect();
    assert!(!sizes.is_empty() && sizes.iter().all(|&n| n == 160));
    assert_eq!(
        events.last().unwrap()["response"]["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    c.next().await; // rate_limits.updated
    c.send(json!({"type": "session.update", "event_id": "v",
        "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}}}))
        .await;
    let error = c.next().await["error"].clone();
    assert_eq!(error["code"], "cannot_update_voice");
    assert_eq!(error["event_id"], "v");
    // Re-sending the same voice is fine.
    let s = c
        .update(json!({"type": "realtime", "audio": {"output": {"voice": "coral"}}}))
        .await;
    assert_eq!(s["audio"]["output"]["voice"], "coral");
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let sim = fast().await;
    let mut c = Client::connect(&sim).await;
    sim.shutdown().await;
    let frame = tokio::time::timeout(WAIT, c.ws.next()).await.unwrap();
    match frame {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
