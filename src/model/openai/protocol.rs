//! The Realtime GA wire protocol: commands become `session.update`, `conversation.item.*`,
//! `input_audio_buffer.*` and `response.*` frames; server frames become [`ModelEvent`]s.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Config;
use super::sequencer::Sequencer;
use crate::audio::AudioFormat;
use crate::items::{self, ItemStatus, MessageContent, RealtimeItem, Role};
use crate::model::{
    AudioCut, ModelCommand, ModelEvent, RawServerEvent, ResponseStatus, SessionSettings, Usage,
    UserContent, UserMessage,
};
use crate::protocol::{
    self, AudioConfig, AudioInputConfig, AudioOutputConfig, ClientEvent, ContentPart, Item,
    Modality, ServerEvent, SessionConfig, SessionKind, ToolDefinition, TranscriptionConfig,
    TurnDetection,
};
use crate::transport::{Queues, WireProtocol};
use crate::{Error, ServerError};

/// The protocol state of a connection, apart from its socket: commands become queued frames,
/// frames become events.
#[derive(Debug)]
pub(super) struct Protocol {
    pub(super) config: Arc<Config>,
    sequencer: Sequencer,
    /// Audio of this response is dropped: it was interrupted.
    interrupted: Option<String>,
    /// `event_id`s of our `response.cancel`s, whose "not active" errors are benign races.
    cancel_ids: VecDeque<String>,
    next_event_id: u64,
}

fn push(q: &mut Queues, event: &ClientEvent) {
    q.push_text(event.to_json());
}

impl Protocol {
    pub(super) fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            sequencer: Sequencer::default(),
            interrupted: None,
            cancel_ids: VecDeque::new(),
            next_event_id: 0,
        }
    }

    fn event_id(&mut self, prefix: &str) -> String {
        self.next_event_id += 1;
        format!("rta_{prefix}_{}", self.next_event_id)
    }

    pub(super) fn session_config(&self, s: &SessionSettings, initial: bool) -> SessionConfig {
        // On connect, fill what the caller left unset with the defaults a voice agent wants;
        // on updates, unset means "unchanged". With a call id, formats stay as negotiated.
        let defaults = initial && self.config.call_id.is_none();
        let or_default = |v: Option<AudioFormat>| v.or(defaults.then_some(AudioFormat::PCM16_24K));
        let turn_detection = s.turn_detection.clone().or_else(|| {
            initial.then_some(Some(TurnDetection::SemanticVad {
                eagerness: None,
                create_response: Some(true),
                interrupt_response: Some(true),
            }))
        });
        let transcription = s.transcription.clone().or_else(|| {
            initial.then(|| {
                Some(TranscriptionConfig {
                    model: Some("gpt-4o-mini-transcribe".into()),
                    ..Default::default()
                })
            })
        });
        let input = AudioInputConfig {
            format: or_default(s.input_format),
            noise_reduction: s.noise_reduction.clone(),
            transcription,
            turn_detection,
        };
        let output = AudioOutputConfig {
            format: or_default(s.output_format),
            voice: s.voice.clone(),
            speed: s.speed,
        };
        let tools = s.tools.as_ref().map(|tools| {
            tools
                .iter()
                .map(|t| ToolDefinition::Function {
                    name: t.name.clone(),
                    description: Some(t.description.clone()),
                    parameters: t.parameters.clone(),
                })
                .collect()
        });
        let model = match (&s.model, initial && self.config.call_id.is_none()) {
            (Some(m), _) => Some(m.clone()),
            (None, true) => Some(self.config.model.clone()),
            (None, false) => None,
        };
        SessionConfig {
            kind: Some(SessionKind::Realtime),
            model,
            output_modalities: s
                .output_modalities
                .clone()
                .or_else(|| initial.then(|| vec![Modality::Audio])),
            instructions: s.instructions.clone(),
            audio: Some(AudioConfig {
                input: Some(input),
                output: Some(output),
            }),
            tools,
            tool_choice: s.tool_choice.clone(),
            max_output_tokens: s.max_output_tokens,
            ..Default::default()
        }
    }

    fn send_session_update(&mut self, settings: &SessionSettings, initial: bool, q: &mut Queues) {
        let session = self.session_config(settings, initial);
        if settings.extra.is_empty() {
            push(
                q,
                &ClientEvent::SessionUpdate {
                    event_id: None,
                    session,
                },
            );
        } else {
            let mut session = serde_json::to_value(&session).unwrap_or_else(|_| json!({}));
            if let Some(obj) = session.as_object_mut() {
                for (k, v) in &settings.extra {
                    obj.insert(k.clone(), v.clone());
                }
            }
            q.push_text(json!({"type": "session.update", "session": session}).to_string());
        }
    }

    fn request_response(&mut self, body: Option<Value>, q: &mut Queues) {
        let body = body.unwrap_or_else(|| json!({"type": "response.create"}));
        if self.sequencer.busy() {
            // Coalesce: a queued request with explicit parameters wins over a plain one.
            let explicit = body.as_object().is_some_and(|o| o.len() > 1);
            if explicit || self.sequencer.queued.is_none() {
                self.sequencer.queued = Some(body);
            }
            return;
        }
        self.send_response_create(body, q);
    }

    fn send_response_create(&mut self, mut body: Value, q: &mut Queues) {
        let id = self.event_id("response_create");
        if let Some(obj) = body.as_object_mut() {
            obj.insert("event_id".into(), Value::String(id.clone()));
        }
        self.sequencer.awaiting = Some(id.clone());
        self.sequencer.last_sent = Some(id);
        q.push_text(body.to_string());
    }

    fn release_queued(&mut self, q: &mut Queues) {
        if !self.sequencer.busy() {
            if let Some(body) = self.sequencer.queued.take() {
                self.send_response_create(body, q);
            }
        }
    }

    fn send_cancel(&mut self, response_id: &str, q: &mut Queues) {
        let id = self.event_id("cancel");
        self.cancel_ids.push_back(id.clone());
        if self.cancel_ids.len() > 16 {
            self.cancel_ids.pop_front();
        }
        push(
            q,
            &ClientEvent::ResponseCancel {
                event_id: Some(id),
                response_id: Some(response_id.to_owned()),
            },
        );
    }

    /// The event for an audio delta: `None` when its response was interrupted.
    fn audio_delta(
        &self,
        response_id: &str,
        item_id: &str,
        content_index: u32,
        delta: &str,
    ) -> Option<ModelEvent> {
        if self.interrupted.as_deref() == Some(response_id) {
            return None;
        }
        Some(match BASE64.decode_to_vec(delta) {
            Ok(data) => ModelEvent::Audio {
                response_id: response_id.to_owned(),
                item_id: item_id.to_owned(),
                content_index,
                data: data.into(),
            },
            Err(err) => ModelEvent::Error(Error::Protocol(format!("invalid base64 audio: {err}"))),
        })
    }

    fn on_server_event(&mut self, event: ServerEvent, q: &mut Queues) {
        use ServerEvent as S;
        let out = &mut q.events;
        match event {
            S::SessionCreated(protocol::SessionCreatedEvent { session, .. })
            | S::SessionUpdated(protocol::SessionUpdatedEvent { session, .. }) => {
                let audio = session.audio.unwrap_or_default();
                let output_format = audio.output.and_then(|o| o.format).unwrap_or_default();
                let server_interrupts = matches!(
                    audio.input.and_then(|i| i.turn_detection),
                    Some(Some(td)) if td.interrupt_response()
                );
                out.push_back(ModelEvent::SessionUpdated {
                    output_format,
                    server_interrupts,
                });
            }
            S::Error(protocol::ErrorEvent { error, .. }) => {
                let code = error.code.as_deref();
                let ours = error.event_id.is_some() && error.event_id == self.sequencer.last_sent;
                if ours {
                    if self.sequencer.awaiting == error.event_id {
                        self.sequencer.awaiting = None;
                    }
                    if code == Some("conversation_already_has_active_response") {
                        // A server-created response (voice activity) won the race: ask again after it.
                        tracing::debug!(
                            "response.create raced a server response; retrying after it"
                        );
                        self.sequencer
                            .queued
                            .get_or_insert_with(|| json!({"type": "response.create"}));
                        return;
                    }
                    self.release_queued(q);
                }
                let benign_cancel = code == Some("response_cancel_not_active")
                    && error
                        .event_id
                        .as_ref()
                        .is_some_and(|id| self.cancel_ids.contains(id));
                if benign_cancel {
                    tracing::debug!("response.cancel raced the end of the response");
                    return;
                }
                q.event(ModelEvent::Error(Error::Server(error.into())));
            }
            S::ResponseCreated(protocol::ResponseCreatedEvent { response, .. }) => {
                self.sequencer.awaiting = None;
                self.sequencer.active = Some(response.id.clone());
                if std::mem::take(&mut self.sequencer.cancel_on_created) {
                    self.interrupted = Some(response.id.clone());
                    self.send_cancel(&response.id, q);
                }
                q.event(ModelEvent::ResponseStarted {
                    response_id: response.id,
                });
            }
            S::ResponseDone(protocol::ResponseDoneEvent { response, .. }) => {
                if self
                    .sequencer
                    .active
                    .as_deref()
                    .is_none_or(|a| a == response.id)
                {
                    self.sequencer.active = None;
                }
                if self.interrupted.as_deref() == Some(response.id.as_str()) {
                    self.interrupted = None;
                }
                let status = match response.status {
                    Some(protocol::ResponseStatus::Cancelled) => ResponseStatus::Cancelled,
                    Some(protocol::ResponseStatus::Failed) => ResponseStatus::Failed,
                    Some(protocol::ResponseStatus::Incomplete) => ResponseStatus::Incomplete,
                    _ => ResponseStatus::Completed,
                };
                let usage = response.usage.map(|u| Usage {
                    requests: 1,
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    total_tokens: u.total_tokens,
                    input_audio_tokens: u
                        .input_token_details
                        .as_ref()
                        .map_or(0, |d| d.audio_tokens),
                    cached_tokens: u
                        .input_token_details
                        .as_ref()
                        .map_or(0, |d| d.cached_tokens),
                    output_audio_tokens: u
                        .output_token_details
                        .as_ref()
                        .map_or(0, |d| d.audio_tokens),
                });
                q.event(ModelEvent::ResponseDone {
                    response_id: response.id,
                    status,
                    usage,
                });
                self.release_queued(q);
            }
            S::ResponseOutputItemDone(protocol::ResponseOutputItemDoneEvent {
                response_id,
                item: Item::FunctionCall(call),
                ..
            }) if call
                .status
                .is_none_or(|s| s == protocol::ItemStatus::Completed) =>
            {
                out.push_back(ModelEvent::FunctionCall {
                    item_id: call.id.unwrap_or_default(),
                    call_id: call.call_id,
                    name: call.name,
                    arguments: call.arguments,
                    response_id,
                });
            }
            S::ResponseOutputAudioDelta(e) => {
                let event = self.audio_delta(&e.response_id, &e.item_id, e.content_index, &e.delta);
                q.events.extend(event);
            }
            S::ResponseOutputAudioDone(e) => out.push_back(ModelEvent::AudioDone {
                item_id: e.item_id,
                content_index: e.content_index,
            }),
            S::ResponseOutputAudioTranscriptDelta(e) => {
                out.push_back(ModelEvent::TranscriptDelta {
                    response_id: e.response_id,
                    item_id: e.item_id,
                    content_index: e.content_index,
                    delta: e.delta,
                })
            }
            S::ResponseOutputTextDelta(e) => out.push_back(ModelEvent::TranscriptDelta {
                response_id: e.response_id,
                item_id: e.item_id,
                content_index: e.content_index,
                delta: e.delta,
            }),
            S::ConversationItemAdded(protocol::ConversationItemAddedEvent {
                previous_item_id,
                item,
                ..
            })
            | S::ConversationItemDone(protocol::ConversationItemDoneEvent {
                previous_item_id,
                item,
                ..
            })
            | S::ConversationItemCreated(protocol::ConversationItemCreatedEvent {
                previous_item_id,
                item,
                ..
            }) => {
                if let Some(item) = realtime_item(item, previous_item_id) {
                    out.push_back(ModelEvent::Item(item));
                }
            }
            S::ConversationItemRetrieved(protocol::ConversationItemRetrievedEvent {
                item, ..
            }) => {
                if let Some(item) = realtime_item(item, None) {
                    out.push_back(ModelEvent::Item(item));
                }
            }
            S::ConversationItemDeleted(e) => {
                out.push_back(ModelEvent::ItemDeleted { item_id: e.item_id })
            }
            S::InputAudioBufferSpeechStarted(e) => out.push_back(ModelEvent::SpeechStarted {
                item_id: e.item_id,
                audio_start_ms: e.audio_start_ms,
            }),
            S::InputAudioBufferSpeechStopped(e) => out.push_back(ModelEvent::SpeechStopped {
                item_id: e.item_id,
                audio_end_ms: e.audio_end_ms,
            }),
            S::InputAudioBufferTimeoutTriggered(e) => {
                out.push_back(ModelEvent::InputAudioTimeout {
                    item_id: e.item_id,
                    audio_start_ms: e.audio_start_ms,
                    audio_end_ms: e.audio_end_ms,
                })
            }
            S::ConversationItemInputAudioTranscriptionDelta(e) => {
                out.push_back(ModelEvent::InputTranscriptDelta {
                    item_id: e.item_id,
                    content_index: e.content_index.unwrap_or(0),
                    delta: e.delta,
                })
            }
            S::ConversationItemInputAudioTranscriptionCompleted(e) => {
                out.push_back(ModelEvent::InputTranscriptCompleted {
                    item_id: e.item_id,
                    content_index: e.content_index,
                    transcript: e.transcript,
                })
            }
            S::ConversationItemInputAudioTranscriptionFailed(e) => {
                let reason = e.error.message.unwrap_or_else(|| "unknown reason".into());
                out.push_back(ModelEvent::Error(Error::Server(ServerError {
                    kind: e.error.kind.unwrap_or_else(|| "transcription_error".into()),
                    code: e.error.code,
                    message: format!("transcription of {} failed: {reason}", e.item_id),
                    param: e.error.param,
                    event_id: None,
                })))
            }
            _ => {}
        }
    }
}

impl WireProtocol for Protocol {
    fn command(&mut self, command: ModelCommand, q: &mut Queues) {
        match command {
            ModelCommand::UserMessage { message, respond } => {
                push(
                    q,
                    &ClientEvent::ConversationItemCreate {
                        event_id: None,
                        previous_item_id: None,
                        item: user_item(message),
                    },
                );
                if respond {
                    self.request_response(None, q);
                }
            }
            ModelCommand::Audio { audio, commit } => {
                if !audio.is_empty() {
                    // Hot path: one allocation, no JSON serializer (base64 needs no escaping).
                    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
                    let mut text =
                        String::with_capacity(HEAD.len() + audio.len().div_ceil(3) * 4 + 2);
                    text.push_str(HEAD);
                    BASE64.encode_append(&audio, &mut text);
                    text.push_str("\"}");
                    q.push_text(text);
                }
                if commit {
                    push(q, &ClientEvent::InputAudioBufferCommit { event_id: None });
                }
            }
            ModelCommand::ToolOutput {
                call_id,
                output,
                respond,
            } => {
                push(
                    q,
                    &ClientEvent::ConversationItemCreate {
                        event_id: None,
                        previous_item_id: None,
                        item: Item::function_call_output(call_id, output),
                    },
                );
                if respond {
                    self.request_response(None, q);
                }
            }
            ModelCommand::CreateResponse => self.request_response(None, q),
            ModelCommand::Interrupt {
                cancel_response,
                cut,
            } => {
                if let Some(active) = self.sequencer.active.clone() {
                    self.interrupted = Some(active.clone());
                    if cancel_response {
                        self.send_cancel(&active, q);
                    }
                } else if cancel_response && self.sequencer.awaiting.is_some() {
                    self.sequencer.cancel_on_created = true;
                }
                if let Some(AudioCut {
                    item_id,
                    content_index,
                    audio_end_ms,
                }) = cut
                {
                    push(
                        q,
                        &ClientEvent::ConversationItemTruncate {
                            event_id: None,
                            item_id,
                            content_index,
                            audio_end_ms,
                        },
                    );
                }
            }
            ModelCommand::UpdateSession(settings) => self.send_session_update(&settings, false, q),
            ModelCommand::CreateItem {
                item,
                mut previous_item_id,
            } => {
                for item in wire_items(*item) {
                    let id = item.id().map(str::to_owned);
                    push(
                        q,
                        &ClientEvent::ConversationItemCreate {
                            event_id: None,
                            previous_item_id: previous_item_id.take(),
                            item,
                        },
                    );
                    previous_item_id = id;
                }
            }
            ModelCommand::DeleteItem { item_id } => push(
                q,
                &ClientEvent::ConversationItemDelete {
                    event_id: None,
                    item_id,
                },
            ),
            ModelCommand::Raw(value) => {
                if value.get("type").and_then(Value::as_str) == Some("response.create") {
                    self.request_response(Some(value), q);
                } else {
                    q.push_text(value.to_string());
                }
            }
        }
    }

    fn on_text(&mut self, text: Utf8Bytes, q: &mut Queues) {
        if let Some((kind, frame)) = DeltaFrame::parse(&text) {
            let event = match kind {
                DeltaKind::Audio => self.audio_delta(
                    &frame.response_id,
                    &frame.item_id,
                    frame.content_index,
                    &frame.delta,
                ),
                DeltaKind::Transcript => Some(ModelEvent::TranscriptDelta {
                    response_id: frame.response_id.into_owned(),
                    item_id: frame.item_id.into_owned(),
                    content_index: frame.content_index,
                    delta: frame.delta.into_owned(),
                }),
            };
            q.event(ModelEvent::Raw(RawServerEvent::from(text)));
            q.events.extend(event);
            return;
        }
        let event = ServerEvent::from_json(&text);
        q.event(ModelEvent::Raw(RawServerEvent::from(text)));
        match event {
            Ok(event) => self.on_server_event(event, q),
            Err(e) => {
                tracing::warn!(error = %e, "undecodable server event");
                q.event(ModelEvent::Error(Error::from(e)));
            }
        }
    }
}

/// A streaming delta, the most frequent server events (`response.output_audio.delta`,
/// `response.output_audio_transcript.delta`, `response.output_text.delta`), borrowed from its
/// frame.
///
/// Read in one pass and without copying its text: the general way reads a frame twice (its
/// `type`, then the typed event) and copies the delta (for audio, its base64) into the event's
/// `String`. The fields and their rules are the typed events' (the three have the same ones,
/// e.g. [`protocol::ResponseOutputAudioDeltaEvent`]), and a second `type` is refused as a
/// duplicate field, so this reads exactly the frames the general way would; any other frame goes
/// the general way, which says what is wrong with it.
#[derive(Deserialize)]
struct DeltaFrame<'a> {
    /// Read only so that a second `type` is refused (what it holds, `parse` already checked).
    #[serde(rename = "type", borrow)]
    _type: Cow<'a, str>,
    #[serde(rename = "event_id", default, borrow)]
    _event_id: Cow<'a, str>,
    #[serde(borrow)]
    response_id: Cow<'a, str>,
    #[serde(borrow)]
    item_id: Cow<'a, str>,
    #[serde(rename = "output_index")]
    _output_index: u32,
    content_index: u32,
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

/// What a [`DeltaFrame`] carries.
#[derive(Clone, Copy)]
enum DeltaKind {
    Audio,
    /// The assistant's transcript, or its text in a text-only response.
    Transcript,
}

impl<'a> DeltaFrame<'a> {
    const TYPES: [(&'static str, DeltaKind); 3] = [
        ("response.output_audio.delta", DeltaKind::Audio),
        (
            "response.output_audio_transcript.delta",
            DeltaKind::Transcript,
        ),
        ("response.output_text.delta", DeltaKind::Transcript),
    ];

    /// The frame, if it is a delta that starts with its `type` (as the server sends them) and
    /// decodes.
    fn parse(text: &'a str) -> Option<(DeltaKind, Self)> {
        let rest = text.strip_prefix(r#"{"type":""#)?;
        let (_, kind) = Self::TYPES.iter().find(|(event_type, _)| {
            rest.strip_prefix(event_type)
                .is_some_and(|tail| tail.starts_with('"'))
        })?;
        let frame = serde_json::from_str::<Self>(text).ok()?;
        Some((*kind, frame))
    }
}

fn user_item(message: UserMessage) -> Item {
    let content = message
        .content
        .into_iter()
        .map(|part| match part {
            UserContent::Text(text) => ContentPart::InputText { text },
            UserContent::Image { url, detail } => ContentPart::InputImage {
                image_url: Some(url),
                detail,
            },
        })
        .collect();
    Item::Message(protocol::MessageItem {
        id: None,
        object: None,
        status: None,
        role: protocol::Role::User,
        content,
    })
}

fn status(s: Option<protocol::ItemStatus>) -> ItemStatus {
    match s {
        Some(protocol::ItemStatus::Completed) => ItemStatus::Completed,
        Some(protocol::ItemStatus::Incomplete) => ItemStatus::Incomplete,
        Some(protocol::ItemStatus::InProgress) | None => ItemStatus::InProgress,
    }
}

/// Translates a wire item into a history item (`None` for items the history does not keep).
fn realtime_item(item: Item, previous_item_id: Option<String>) -> Option<RealtimeItem> {
    match item {
        Item::Message(m) => {
            let role = match m.role {
                protocol::Role::User => Role::User,
                protocol::Role::Assistant => Role::Assistant,
                protocol::Role::System => Role::System,
            };
            let content = m
                .content
                .into_iter()
                .map(|part| match part {
                    ContentPart::InputText { text } => MessageContent::InputText { text },
                    ContentPart::InputAudio { transcript, .. } => {
                        MessageContent::InputAudio { transcript }
                    }
                    ContentPart::InputImage { image_url, detail } => MessageContent::InputImage {
                        image_url: image_url.unwrap_or_default(),
                        detail,
                    },
                    ContentPart::OutputText { text } | ContentPart::Text { text } => {
                        MessageContent::Text { text }
                    }
                    ContentPart::OutputAudio { transcript, .. }
                    | ContentPart::Audio { transcript, .. } => MessageContent::Audio { transcript },
                })
                .collect();
            Some(RealtimeItem::Message(items::MessageItem {
                item_id: m.id.unwrap_or_default(),
                previous_item_id,
                role,
                content,
                status: status(m.status),
            }))
        }
        Item::FunctionCall(c) => Some(RealtimeItem::ToolCall(items::ToolCallItem {
            item_id: c.id.unwrap_or_default(),
            previous_item_id,
            call_id: c.call_id,
            name: c.name,
            arguments: c.arguments,
            output: None,
            status: status(c.status),
        })),
        _ => None,
    }
}

/// Translates a history item back into the wire items that re-create it. Audio is not kept in
/// history, so spoken parts are re-created from their transcripts (as text); parts with nothing
/// to say are left out.
fn wire_items(item: RealtimeItem) -> Vec<Item> {
    match item {
        RealtimeItem::Message(m) => {
            let assistant = m.role == Role::Assistant;
            let content: Vec<ContentPart> = m
                .content
                .into_iter()
                .filter_map(|part| match part {
                    MessageContent::InputImage { image_url, detail } => {
                        Some(ContentPart::InputImage {
                            image_url: Some(image_url),
                            detail,
                        })
                    }
                    other => {
                        let text = other.text().filter(|t| !t.is_empty())?.to_owned();
                        Some(if assistant {
                            ContentPart::OutputText { text }
                        } else {
                            ContentPart::InputText { text }
                        })
                    }
                })
                .collect();
            if content.is_empty() {
                return Vec::new();
            }
            let role = match m.role {
                Role::User => protocol::Role::User,
                Role::Assistant => protocol::Role::Assistant,
                Role::System => protocol::Role::System,
            };
            vec![Item::Message(protocol::MessageItem {
                id: Some(m.item_id).filter(|id| !id.is_empty()),
                object: None,
                status: None,
                role,
                content,
            })]
        }
        RealtimeItem::ToolCall(t) => {
            let mut items = vec![Item::FunctionCall(protocol::FunctionCallItem {
                id: Some(t.item_id).filter(|id| !id.is_empty()),
                object: None,
                status: None,
                call_id: t.call_id.clone(),
                name: t.name,
                arguments: t.arguments,
            })];
            if let Some(output) = t.output {
                items.push(Item::function_call_output(t.call_id, output));
            }
            items
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass way is taken for what the server sends, and only for that (what either way
    /// decodes to is compared in `openai::tests`).
    #[test]
    fn deltas_in_the_servers_order_take_the_one_pass_way() {
        let fields = r#""event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAAA""#;
        for (t, audio) in [
            ("response.output_audio.delta", true),
            ("response.output_audio_transcript.delta", false),
            ("response.output_text.delta", false),
        ] {
            let server = format!(r#"{{"type":"{t}",{fields}}}"#);
            let (kind, frame) = DeltaFrame::parse(&server).expect("one pass");
            assert_eq!(matches!(kind, DeltaKind::Audio), audio, "{t}");
            assert!(
                matches!(frame.delta, Cow::Borrowed("AAAA")),
                "borrowed from the frame"
            );
            for other in [
                format!(r#"{{{fields},"type":"{t}"}}"#),
                format!(r#"{{"type":"{t}x",{fields}}}"#),
                format!(r#"{{"type":"{t}","type":"{t}",{fields}}}"#),
                format!(r#"{{"type":"{t}",{fields}"#),
            ] {
                assert!(DeltaFrame::parse(&other).is_none(), "{other}");
            }
        }
    }
}
