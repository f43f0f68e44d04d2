//! The session adapts to what a backend declares it can do (`model::Capabilities`), and
//! reports a backend that breaks the contract instead of failing silently.

use std::time::Duration;

use realtime_agents::items::{RealtimeItem, Role};
use realtime_agents::model::task::TaskModel;
use realtime_agents::model::{Capabilities, ModelCommand};
use realtime_agents::testing::{Reply, ScriptedModel};
use realtime_agents::{
    Error, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E,
};

async fn start(model: &ScriptedModel, agent: RealtimeAgent) -> RealtimeSession {
    RealtimeRunner::new(agent)
        .model(model.clone())
        .run(())
        .await
        .expect("session starts")
}

/// Runs a turn that is interrupted after its fifth chunk of audio (some of it was heard).
async fn interrupted_turn(session: &mut RealtimeSession) -> Vec<E> {
    let handle = session.handle();
    let mut events = Vec::new();
    let mut chunks = 0;
    let mut asked = false;
    tokio::time::timeout(
        Duration::from_secs(10),
        session.run_turn_with("Tell me a story.", |e| {
            chunks += usize::from(matches!(e, E::Audio { .. }));
            if chunks == 5 && !asked {
                asked = true;
                let handle = handle.clone();
                tokio::spawn(async move { handle.interrupt().await });
            }
            events.push(e.clone());
        }),
    )
    .await
    .expect("the turn ends")
    .expect("the turn succeeds");
    events
}

fn interrupts(model: &ScriptedModel) -> Vec<(bool, bool)> {
    model
        .commands()
        .into_iter()
        .filter_map(|c| match c {
            ModelCommand::Interrupt {
                cancel_response,
                cut,
            } => Some((cancel_response, cut.is_some())),
            _ => None,
        })
        .collect()
}

const STORY: &str = "Once upon a time there was a long story that went on and on and on.";

#[tokio::test]
async fn without_truncation_playback_stops_but_nothing_is_cut() {
    let model = ScriptedModel::new()
        .capabilities(Capabilities::default().truncation(false))
        .pace(Duration::from_millis(20))
        .reply(Reply::speech(STORY));
    let mut session = start(&model, RealtimeAgent::new("Assistant")).await;
    let events = interrupted_turn(&mut session).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioInterrupted { .. }))
    );
    assert_eq!(interrupts(&model), [(true, false)], "cancel, no cut");
}

#[tokio::test]
async fn with_truncation_the_cut_goes_to_the_backend() {
    let model = ScriptedModel::new()
        .pace(Duration::from_millis(20))
        .reply(Reply::speech(STORY));
    let mut session = start(&model, RealtimeAgent::new("Assistant")).await;
    interrupted_turn(&mut session).await;
    assert_eq!(
        interrupts(&model),
        [(true, true)],
        "cancel, and cut at what was heard"
    );
}

#[tokio::test]
async fn without_cancel_the_rest_of_the_response_is_dropped_locally() {
    let model = ScriptedModel::new()
        .capabilities(Capabilities::default().response_cancel(false))
        .pace(Duration::from_millis(10))
        .reply(Reply::speech(STORY));
    let mut session = start(&model, RealtimeAgent::new("Assistant")).await;
    let events = interrupted_turn(&mut session).await;
    assert!(
        interrupts(&model).iter().all(|(cancel, _)| !cancel),
        "no cancel sent: {:?}",
        model.commands()
    );
    let cut = events
        .iter()
        .position(|e| matches!(e, E::AudioInterrupted { .. }))
        .expect("playback stopped");
    assert!(
        !events[cut..].iter().any(|e| matches!(e, E::Audio { .. })),
        "no audio after the interruption: {events:#?}"
    );
}

#[tokio::test]
async fn an_append_only_backend_refuses_history_edits_and_seeds() {
    let caps = Capabilities::default()
        .edit_items(false)
        .create_items(false);
    let model = ScriptedModel::new().capabilities(caps);
    let config =
        RealtimeRunConfig::new().history(vec![RealtimeItem::text(Role::User, "My name is Ada.")]);
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model.clone())
        .config(config)
        .run(())
        .await
        .unwrap();
    let edit = session.handle().update_history(|_| Vec::new()).await;
    assert!(matches!(edit, Err(Error::Config(_))), "{edit:?}");
    session.close().await;
    let events: Vec<E> = futures::StreamExt::collect(&mut session).await;
    assert!(
        events.iter().any(
            |e| matches!(e, E::Error { error: Error::Config(m) } if m.contains("seeded history"))
        ),
        "{events:#?}"
    );
    assert!(
        !model.commands().iter().any(|c| matches!(
            c,
            ModelCommand::CreateItem { .. } | ModelCommand::DeleteItem { .. }
        )),
        "{:?}",
        model.commands()
    );
}

#[tokio::test]
async fn fixed_instructions_are_left_out_of_agent_switches() {
    let model =
        ScriptedModel::new().capabilities(Capabilities::default().mutable_instructions(false));
    let session = start(
        &model,
        RealtimeAgent::new("First").instructions("Be first."),
    )
    .await;
    session
        .update_agent(RealtimeAgent::new("Second").instructions("Be second."))
        .await
        .unwrap();
    // The switch went out with the tools but without the instructions.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let update = loop {
        let updates: Vec<_> = model
            .commands()
            .into_iter()
            .filter_map(|c| match c {
                ModelCommand::UpdateSession(s) => Some(s),
                _ => None,
            })
            .collect();
        if let Some(update) = updates.last() {
            break update.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session update sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(update.instructions, None);
    assert!(update.tools.is_some());
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Second"
    );
}

#[tokio::test]
async fn a_backend_that_takes_no_response_requests_gets_none() {
    let model = ScriptedModel::new().capabilities(Capabilities::default().response_create(false));
    let mut session = start(&model, RealtimeAgent::new("Assistant")).await;
    session.handle().create_response().await.unwrap();
    let events = support_until_error(&mut session).await;
    assert!(
        matches!(events.last(), Some(E::Error { error: Error::Config(m) }) if m.contains("response requests")),
        "{events:#?}"
    );
    assert!(
        !model
            .commands()
            .iter()
            .any(|c| matches!(c, ModelCommand::CreateResponse))
    );
}

async fn support_until_error(session: &mut RealtimeSession) -> Vec<E> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = futures::StreamExt::next(session).await {
            let done = matches!(e, E::Error { .. });
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .expect("an error event");
    seen
}

#[tokio::test]
async fn a_backend_that_never_echoes_the_user_message_is_reported() {
    // Answers every request but never echoes the user's message as an item.
    let model = TaskModel::new(|_, mut commands, events| async move {
        while let Some(command) = commands.recv().await {
            if let ModelCommand::UserMessage { respond: true, .. } = command {
                let mut response = events.start_response().await?;
                response.text("Hi.").await?;
                response.complete().await?;
            }
        }
        Ok(())
    });
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .run(())
        .await
        .unwrap();
    let mut errors = Vec::new();
    let result = session
        .run_turn_with("Hello", |e| {
            if let E::Error { error } = e {
                errors.push(error.clone());
            }
        })
        .await
        .unwrap();
    assert_eq!(result.text, "Hi.");
    assert!(
        matches!(errors.as_slice(), [Error::Contract(m)] if m.contains("never echoed")),
        "{errors:?}"
    );
}
