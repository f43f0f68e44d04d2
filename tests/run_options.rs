//! Per-session options: sessions from one runner, against the built-in simulator, each with
//! its own context, token, time limit, tracker, history, settings and budget.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use realtime_agents::audio::AudioFormat;
use realtime_agents::cost::{Budget, ModelPrices, PriceTable};
use realtime_agents::items::{ItemStatus, RealtimeItem, Role};
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, SessionSettings};
use realtime_agents::protocol::Modality;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    CancellationToken, Error, FunctionTool, PlaybackTracker, RealtimeAgent, RealtimeRunConfig,
    RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E, SessionOptions, ToolContext,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use support::{assistant_text, client_events, recording_simulator, until, until_end};

/// The state one session's tools see.
struct Caller(&'static str);

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

fn runner(sim: &Simulator, config: RealtimeRunConfig) -> RealtimeRunner {
    let weather = FunctionTool::with_context(
        "get_weather",
        "Weather in a city.",
        |ctx: ToolContext, a: City| async move {
            let caller = ctx.context.get::<Caller>().map_or("nobody", |c| c.0);
            Ok::<_, String>(format!("Sunny in {} for {caller}", a.city))
        },
    );
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(weather))
        .model(model)
        .config(config)
}

/// Sends `text` and returns what the assistant answered.
async fn ask(session: &mut RealtimeSession, text: &str) -> String {
    session.send_message(text).await.expect("sends");
    let events = until(session, |e| matches!(e, E::AgentEnd { .. })).await;
    assistant_text(&events)
}

/// The final error of a session, read to the end.
async fn closing_error(session: &mut RealtimeSession) -> Option<Error> {
    match until_end(session).await.pop() {
        Some(E::Closed { error }) => error,
        other => panic!("the stream did not end with Closed: {other:?}"),
    }
}

#[tokio::test]
async fn each_session_gets_its_own_context() {
    let sim = recording_simulator().await;
    let runner = runner(&sim, RealtimeRunConfig::new());
    let mut alice = runner
        .start(SessionOptions::new().context(Caller("alice")))
        .await
        .unwrap();
    let mut bob = runner
        .start(SessionOptions::new().context(Caller("bob")))
        .await
        .unwrap();
    let mut nobody = runner.start(SessionOptions::new()).await.unwrap();
    let tool_output = |events: Vec<E>| {
        events.into_iter().find_map(|e| match e {
            E::ToolEnd { output, .. } => Some(output),
            _ => None,
        })
    };
    for (session, expected) in [
        (&mut bob, "Sunny in Paris for bob"),
        (&mut alice, "Sunny in Paris for alice"),
        (&mut nobody, "Sunny in Paris for nobody"),
    ] {
        session
            .send_message("What's the weather in Paris?")
            .await
            .unwrap();
        let events = until(session, |e| matches!(e, E::ToolEnd { .. })).await;
        assert_eq!(tool_output(events).as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn time_limits_are_per_session() {
    let sim = recording_simulator().await;
    // The runner's limit is long; one session's is short.
    let runner = runner(
        &sim,
        RealtimeRunConfig::new().max_duration(Duration::from_secs(3600)),
    );
    let mut short = runner
        .start(SessionOptions::new().max_duration(Duration::from_millis(300)))
        .await
        .unwrap();
    let mut long = runner.start(SessionOptions::new()).await.unwrap();
    let error = closing_error(&mut short).await;
    assert!(matches!(error, Some(Error::Timeout(_))), "{error:?}");
    assert!(short.handle().is_closed());
    // The other session is untouched and answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!long.handle().is_closed());
    assert!(!ask(&mut long, "Hello!").await.is_empty());
    // A limit far beyond any clock does not overflow it.
    let mut endless = runner
        .start(SessionOptions::new().max_duration(Duration::MAX))
        .await
        .unwrap();
    assert!(!ask(&mut endless, "Hello!").await.is_empty());
}

#[tokio::test]
async fn tokens_are_per_session_and_the_runners_still_reaches_all() {
    let sim = recording_simulator().await;
    let shutdown = CancellationToken::new();
    let runner = runner(
        &sim,
        RealtimeRunConfig::new().cancellation_token(shutdown.clone()),
    );
    let (first_token, second_token) = (CancellationToken::new(), CancellationToken::new());
    let mut first = runner
        .start(SessionOptions::new().cancellation_token(first_token.clone()))
        .await
        .unwrap();
    let mut second = runner
        .start(SessionOptions::new().cancellation_token(second_token.clone()))
        .await
        .unwrap();
    let mut plain = runner.start(SessionOptions::new()).await.unwrap();

    first_token.cancel();
    let error = closing_error(&mut first).await;
    assert!(matches!(error, Some(Error::Cancelled { .. })), "{error:?}");
    assert!(!second_token.is_cancelled() && !shutdown.is_cancelled());
    assert!(!ask(&mut second, "Hello!").await.is_empty());
    assert!(!ask(&mut plain, "Hello!").await.is_empty());

    // Cancelling a session's handle touches neither its token nor the runner's.
    second.handle().cancel("done with it");
    let error = closing_error(&mut second).await;
    assert!(
        matches!(&error, Some(Error::Cancelled { reason }) if reason == "done with it"),
        "{error:?}"
    );
    assert!(!second_token.is_cancelled() && !shutdown.is_cancelled());

    // The runner's token ends sessions with their own token and those without.
    let mut third = runner
        .start(SessionOptions::new().cancellation_token(CancellationToken::new()))
        .await
        .unwrap();
    shutdown.cancel();
    for session in [&mut third, &mut plain] {
        let error = closing_error(session).await;
        assert!(matches!(error, Some(Error::Cancelled { .. })), "{error:?}");
    }
}

/// Counts the audio a session delivered.
#[derive(Default)]
struct Counting(AtomicUsize);

impl PlaybackTracker for Counting {
    fn on_audio_delivered(&self, _item: &str, _content: u32, bytes: usize, _f: AudioFormat) {
        self.0.fetch_add(bytes, Ordering::SeqCst);
    }
    fn played_ms(&self, _item: &str, _content: u32) -> Option<u64> {
        None
    }
    fn on_interrupted(&self) {}
}

#[tokio::test]
async fn trackers_are_per_session() {
    let sim = recording_simulator().await;
    let runner_tracker = Arc::new(Counting::default());
    let runner = runner(
        &sim,
        RealtimeRunConfig::new().playback_tracker(runner_tracker.clone()),
    );
    let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let mut first = runner
        .start(SessionOptions::new().playback_tracker(a.clone()))
        .await
        .unwrap();
    let mut second = runner
        .start(SessionOptions::new().playback_tracker(b.clone()))
        .await
        .unwrap();
    let mut plain = runner.start(SessionOptions::new()).await.unwrap();

    first.send_message("Hello!").await.unwrap();
    let events = until(&mut first, |e| matches!(e, E::AgentEnd { .. })).await;
    let heard: usize = events
        .iter()
        .map(|e| match e {
            E::Audio { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert!(heard > 0);
    assert_eq!(a.0.load(Ordering::SeqCst), heard);
    assert_eq!(b.0.load(Ordering::SeqCst), 0);
    assert_eq!(runner_tracker.0.load(Ordering::SeqCst), 0);

    ask(&mut second, "Hello!").await;
    assert_eq!(b.0.load(Ordering::SeqCst), heard, "the same greeting");
    assert_eq!(a.0.load(Ordering::SeqCst), heard);

    // A session without its own tracker uses the runner's.
    ask(&mut plain, "Hello!").await;
    assert_eq!(runner_tracker.0.load(Ordering::SeqCst), heard);
    assert_eq!(a.0.load(Ordering::SeqCst), heard);
}

/// The texts of the `conversation.item.create` events the simulator received, once there
/// are `n`.
async fn created_texts(sim: &Simulator, n: usize) -> Vec<String> {
    let created = |e: &&Value| e["type"] == "conversation.item.create";
    client_events(sim, |events| events.iter().filter(created).count() >= n)
        .await
        .iter()
        .filter(created)
        .filter_map(|e| e["item"]["content"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn histories_are_per_session() {
    let sim = recording_simulator().await;
    let runner = runner(
        &sim,
        RealtimeRunConfig::new().history(vec![RealtimeItem::text(Role::User, "Runner note.")]),
    );
    let first = runner
        .start(SessionOptions::new().history(vec![
            RealtimeItem::text(Role::User, "My order is 4711."),
            RealtimeItem::text(Role::Assistant, "Order 4711, got it."),
        ]))
        .await
        .unwrap();
    let mut second = runner
        .start(
            SessionOptions::new()
                .history(vec![RealtimeItem::text(Role::User, "My order is 1234.")]),
        )
        .await
        .unwrap();
    let plain = runner.start(SessionOptions::new()).await.unwrap();

    let texts = |items: Vec<RealtimeItem>| {
        items
            .iter()
            .filter_map(|i| i.as_message().map(|m| m.text()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        texts(first.handle().history().await.unwrap()),
        ["My order is 4711.", "Order 4711, got it."]
    );
    assert_eq!(
        texts(second.handle().history().await.unwrap()),
        ["My order is 1234."]
    );
    assert_eq!(
        texts(plain.handle().history().await.unwrap()),
        ["Runner note."]
    );
    // The model got each seed once, and nothing else yet.
    let mut created = created_texts(&sim, 4).await;
    created.sort();
    assert_eq!(
        created,
        [
            "My order is 1234.",
            "My order is 4711.",
            "Order 4711, got it.",
            "Runner note."
        ]
    );
    // And the sessions go on from their own conversations.
    assert_eq!(ask(&mut second, "Thanks.").await, "You said: Thanks.");
    assert_eq!(texts(second.handle().history().await.unwrap()).len(), 3);
    assert_eq!(texts(first.handle().history().await.unwrap()).len(), 2);
    first.close().await;
    plain.close().await;
}

#[tokio::test]
async fn settings_merge_over_the_runners_and_capacity_is_per_session() {
    let sim = recording_simulator().await;
    let runner = runner(
        &sim,
        RealtimeRunConfig::new()
            .settings(SessionSettings::new().voice("marin"))
            .event_capacity(1),
    );
    let text_only = SessionOptions::new()
        .settings(SessionSettings::new().output_modalities(vec![Modality::Text]))
        .event_capacity(4096);
    let mut text = runner.start(text_only).await.unwrap();
    let mut audio = runner.start(SessionOptions::new()).await.unwrap();
    text.send_message("Tell me a long story.").await.unwrap();
    // (A short answer: synthesising a long story's audio would hold up this one thread.)
    audio.send_message("Hello!").await.unwrap();
    // Nobody reads either stream. With room for 4096 events, the text session's task goes on
    // to the end of the answer and still answers commands...
    let finished = |history: &[RealtimeItem]| {
        history
            .iter()
            .filter_map(|i| i.as_message())
            .find(|m| m.role == Role::Assistant && m.status == ItemStatus::Completed)
            .map(|m| m.text())
    };
    let story = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let history = text.handle().history().await.unwrap();
            if let Some(story) = finished(&history) {
                return story;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the text session's task finished the answer without a reader");
    assert!(story.len() > 500, "{story}");
    // ...while the one with the runner's single slot soon waits for its reader, and answers
    // no command until it reads.
    let mut blocked = false;
    for _ in 0..20 {
        let history = audio.handle();
        let history = tokio::time::timeout(Duration::from_millis(300), history.history());
        if history.await.is_err() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the session task kept going without a reader");
    let events = until(&mut text, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(!events.iter().any(|e| matches!(e, E::Audio { .. })));
    let events = until(&mut audio, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(events.iter().any(|e| matches!(e, E::Audio { .. })));
    // Both sessions asked for the runner's voice; only one for text.
    let updates: Vec<Value> = client_events(&sim, |_| true)
        .await
        .into_iter()
        .filter(|e| e["type"] == "session.update")
        .collect();
    assert_eq!(updates.len(), 2, "{updates:#?}");
    assert!(
        updates
            .iter()
            .all(|u| u["session"]["audio"]["output"]["voice"] == "marin")
    );
    let text_sessions = updates
        .iter()
        .filter(|u| u["session"]["output_modalities"] == serde_json::json!(["text"]))
        .count();
    assert_eq!(text_sessions, 1, "{updates:#?}");
}

#[tokio::test]
async fn usage_and_cost_of_a_session() {
    let sim = recording_simulator().await;
    let mut session = runner(&sim, RealtimeRunConfig::new())
        .start(SessionOptions::new())
        .await
        .unwrap();
    assert_eq!(session.usage().total_tokens, 0);
    assert_eq!(session.cost_usd(), Some(0.0));
    ask(&mut session, "Hello!").await;
    let usage = session.usage();
    assert!(
        usage.total_tokens > 0 && usage.output_audio_tokens > 0,
        "{usage:?}"
    );
    let expected = PriceTable::new().cost_usd("gpt-realtime", &usage).unwrap();
    assert_eq!(session.cost_usd(), Some(expected));
    assert!(expected > 0.0);

    // The prices of the runner are the ones used, for the model the backend names.
    let mini = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .model("gpt-realtime-mini")
        .build();
    let mut cheap = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(mini)
        .start(SessionOptions::new())
        .await
        .unwrap();
    ask(&mut cheap, "Hello!").await;
    let usage = cheap.usage();
    let mini_cost = PriceTable::new().cost_usd("gpt-realtime-mini", &usage);
    assert_eq!(cheap.cost_usd(), mini_cost);
}

#[tokio::test]
async fn a_dollar_budget_needs_a_price() {
    let sim = recording_simulator().await;
    let unknown = || {
        OpenAIRealtimeWebSocketModel::builder()
            .url(sim.url())
            .model("my-realtime")
            .build()
    };
    let agent = || RealtimeAgent::new("Assistant");
    let runner = RealtimeRunner::new(agent())
        .model(unknown())
        .config(RealtimeRunConfig::new().budget(Budget::usd(1.0)));
    let error = runner.start(SessionOptions::new()).await.err();
    assert!(
        matches!(&error, Some(Error::Config(m)) if m.contains("my-realtime")),
        "{error:?}"
    );
    assert_eq!(sim.connections(), 0, "refused before connecting");
    // A token budget needs no price; nor does a priced model.
    runner
        .start(SessionOptions::new().budget(Budget::tokens(1000)))
        .await
        .unwrap();
    let priced = RealtimeRunner::new(agent()).model(unknown()).config(
        RealtimeRunConfig::new().budget(Budget::usd(1.0)).prices(
            PriceTable::new().with("my-realtime", ModelPrices::new(1.0, 0.1, 2.0, 3.0, 4.0)),
        ),
    );
    let mut session = priced.start(SessionOptions::new()).await.unwrap();
    ask(&mut session, "Hello!").await;
    assert!(session.cost_usd().is_some_and(|c| c > 0.0));
}

#[tokio::test]
async fn a_session_over_its_budget_ends() {
    let sim = recording_simulator().await;
    let runner = runner(&sim, RealtimeRunConfig::new());
    let mut small = runner
        .start(SessionOptions::new().budget(Budget::tokens(1)))
        .await
        .unwrap();
    let mut big = runner
        .start(SessionOptions::new().budget(Budget::usd(100.0)))
        .await
        .unwrap();
    small.send_message("Hello!").await.unwrap();
    let error = closing_error(&mut small).await;
    assert!(
        matches!(error, Some(Error::BudgetExceeded { budget: Budget::Tokens(1), tokens, .. }) if tokens > 1),
        "{error:?}"
    );
    assert!(!ask(&mut big, "Hello!").await.is_empty());
    assert!(!big.handle().is_closed());
    big.close().await;
    let _ = big.next().await;
}
