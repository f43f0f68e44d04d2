//! History control over loopback WebSockets: seeding a session, editing the conversation,
//! muting, images and messages that ask for no response.

mod support;

use realtime_agents::items::{
    ItemStatus, MessageContent, MessageItem, RealtimeItem, Role, ToolCallItem,
};
use realtime_agents::model::UserMessage;
use realtime_agents::{RealtimeAgent, RealtimeRunConfig, RealtimeSessionEvent as E};
use serde_json::json;
use support::script::start;
use support::{ScriptedServer, ev, until};

fn tool_call(id: &str, call_id: &str, output: &str) -> RealtimeItem {
    RealtimeItem::ToolCall(ToolCallItem {
        item_id: id.into(),
        previous_item_id: None,
        call_id: call_id.into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
        output: Some(output.into()),
        status: ItemStatus::Completed,
    })
}

#[tokio::test]
async fn a_saved_history_is_recreated_in_order_before_anything_else() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let spoken = RealtimeItem::Message(MessageItem {
        item_id: "item_old_1".into(),
        previous_item_id: None,
        role: Role::User,
        content: vec![MessageContent::InputAudio {
            transcript: Some("What's the weather?".into()),
        }],
        status: ItemStatus::Completed,
    });
    let saved = vec![
        spoken,
        tool_call("item_old_2", "call_old", "Sunny"),
        RealtimeItem::text(Role::Assistant, "It is sunny in Paris."),
    ];
    let config = RealtimeRunConfig::new().history(saved);
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    session.send_message("Thanks!").await.unwrap();
    let creates = server.wait_for("conversation.item.create", 5).await;
    assert_eq!(
        server.types()[..6],
        [
            "session.update",
            "conversation.item.create",
            "conversation.item.create",
            "conversation.item.create",
            "conversation.item.create",
            "conversation.item.create"
        ]
    );
    assert_eq!(
        creates[0]["item"],
        json!({"type": "message", "id": "item_old_1", "role": "user",
               "content": [{"type": "input_text", "text": "What's the weather?"}]})
    );
    assert_eq!(
        creates[1]["item"],
        json!({"type": "function_call", "id": "item_old_2", "call_id": "call_old",
               "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(creates[2]["previous_item_id"], "item_old_2");
    assert_eq!(
        creates[2]["item"],
        json!({"type": "function_call_output", "call_id": "call_old", "output": "Sunny"})
    );
    let assistant_id = creates[3]["item"]["id"].as_str().unwrap().to_owned();
    assert!(assistant_id.len() <= 32 && !assistant_id.is_empty());
    assert_eq!(
        creates[3]["item"]["content"],
        json!([{"type": "output_text", "text": "It is sunny in Paris."}])
    );
    assert_eq!(creates[4]["item"]["content"][0]["text"], "Thanks!");
    let events = until(
        &mut session,
        |e| matches!(e, E::HistoryAdded { item } if item.item_id() == assistant_id),
    )
    .await;
    let added: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            E::HistoryAdded { item } => Some(item.item_id()),
            _ => None,
        })
        .collect();
    assert_eq!(added, ["item_old_1", "item_old_2", assistant_id.as_str()]);
    assert_eq!(session.history().len(), 3);
    // The server echoing the created items changes nothing.
    server.send(ev::user_text_item(
        "item_old_1",
        None,
        "What's the weather?",
    ));
    session.send_message("x").await.unwrap();
    server.wait_for("conversation.item.create", 6).await;
    assert_eq!(
        session.handle().history().await.unwrap()[0],
        session.history()[0]
    );
}

#[tokio::test]
async fn update_history_deletes_and_recreates_items_in_their_new_place() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    server.send(ev::user_text_item("u1", None, "My name is Ada."));
    server.send(ev::user_text_item("a1", Some("u1"), "Hi Ada."));
    server.send(ev::user_text_item("u2", Some("a1"), "I live in Rome."));
    until(
        &mut session,
        |e| matches!(e, E::HistoryAdded { item } if item.item_id() == "u2"),
    )
    .await;

    session
        .handle()
        .update_history(|items| {
            let mut edited = vec![RealtimeItem::text(Role::System, "The caller is verified.")];
            edited.push(items[0].clone());
            let mut moved = items[2].clone();
            if let RealtimeItem::Message(m) = &mut moved {
                m.content = vec![MessageContent::InputText {
                    text: "I live in Milan.".into(),
                }];
            }
            edited.push(moved);
            edited
        })
        .await
        .unwrap();
    let deletes = server.wait_for("conversation.item.delete", 2).await;
    let deleted: Vec<&str> = deletes
        .iter()
        .map(|d| d["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["a1", "u2"]);
    let creates = server.wait_for("conversation.item.create", 2).await;
    assert_eq!(creates[0]["previous_item_id"], "root");
    assert_eq!(creates[0]["item"]["role"], "system");
    assert_eq!(creates[1]["previous_item_id"], "u1");
    assert_eq!(
        creates[1]["item"],
        json!({"type": "message", "id": "u2", "role": "user",
               "content": [{"type": "input_text", "text": "I live in Milan."}]})
    );
    let texts: Vec<String> = session
        .handle()
        .history()
        .await
        .unwrap()
        .iter()
        .filter_map(|i| i.as_message().map(MessageItem::text))
        .collect();
    assert_eq!(
        texts,
        [
            "The caller is verified.",
            "My name is Ada.",
            "I live in Milan."
        ]
    );
    // The session's own mirror agrees once the events are read.
    until(
        &mut session,
        |e| matches!(e, E::HistoryAdded { item } if item.item_id() == "u2"),
    )
    .await;
    let mirror: Vec<String> = session
        .history()
        .iter()
        .filter_map(|i| i.as_message().map(MessageItem::text))
        .collect();
    assert_eq!(mirror, texts);
    assert_eq!(server.received_of("response.create").len(), 0);
}

#[tokio::test]
async fn muted_audio_is_dropped_and_unmuting_resumes_it() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let handle = session.handle();
    handle.send_audio(vec![1u8; 960], false).await.unwrap();
    handle.mute(true);
    assert!(handle.is_muted());
    handle.send_audio(vec![2u8; 960], false).await.unwrap();
    handle.send_audio(vec![3u8; 960], true).await.unwrap();
    handle.mute(false);
    handle.send_audio(vec![4u8; 960], false).await.unwrap();
    let appends = server.wait_for("input_audio_buffer.append", 2).await;
    use base64::Engine as _;
    let firsts: Vec<u8> = appends
        .iter()
        .map(|a| {
            base64::engine::general_purpose::STANDARD
                .decode(a["audio"].as_str().unwrap())
                .unwrap()[0]
        })
        .collect();
    assert_eq!(firsts, [1, 4]);
    assert_eq!(server.received_of("input_audio_buffer.commit").len(), 1);
}

#[tokio::test]
async fn images_and_messages_without_a_response() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let handle = session.handle();
    handle
        .add_message(UserMessage::text("My screen:").with_image("data:image/png;base64,AAAA"))
        .await
        .unwrap();
    let create = server
        .wait_for("conversation.item.create", 1)
        .await
        .remove(0);
    assert_eq!(
        create["item"]["content"],
        json!([{"type": "input_text", "text": "My screen:"},
               {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}])
    );
    assert!(server.received_of("response.create").is_empty());
    handle.send_message("What do you see?").await.unwrap();
    server.wait_for("response.create", 1).await;
}
