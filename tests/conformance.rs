//! The conformance kit on the in-tree backends (the OpenAI backend against the simulator, the
//! echo backend of `examples/custom_backend.rs`, the scripted test model), and on broken
//! backends, to show that it names what they break.

#[path = "../examples/custom_backend.rs"]
#[allow(dead_code)]
mod custom_backend;

use std::time::Duration;

use realtime_agents::model::conformance::{self, Options, Outcome, Report, Step};
use realtime_agents::model::task::TaskModel;
use realtime_agents::model::{
    Capabilities, ModelCommand, ModelEvent, OpenAIRealtimeWebSocketModel, ResponseStatus, ToolSpec,
};
use realtime_agents::simulator::Simulator;
use realtime_agents::testing::{Reply, ScriptedModel};
use serde_json::json;

fn outcome(report: &Report, step: Step) -> Outcome {
    report
        .step(step)
        .map(|s| s.outcome.clone())
        .unwrap_or_else(|| panic!("no {step} step in\n{report}"))
}

/// Every step ran and passed, and none left a note (nothing unexercised).
fn assert_all_passed(report: &Report) {
    assert!(report.passed(), "{report}");
    for step in &report.steps {
        assert_eq!(step.outcome, Outcome::Passed, "{report}");
        assert!(step.notes.is_empty(), "{report}");
    }
}

#[tokio::test]
async fn the_openai_backend_conforms_against_the_simulator() {
    let sim = Simulator::builder()
        .speed(0.0)
        .start()
        .await
        .expect("simulator");
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    let report = conformance::run(&model, &Options::default()).await;
    assert_all_passed(&report);
    assert_eq!(report.capabilities, Some(Capabilities::default()));
}

#[tokio::test]
async fn the_echo_backend_of_the_example_conforms() {
    let tool = ToolSpec {
        name: "get_weather".into(),
        description: "Weather in a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    };
    // The echo backend calls a tool when the message names it.
    let options = Options::default().tool(tool, r#"get_weather {"city": "Paris"}"#);
    let report = conformance::run(&custom_backend::echo_model(), &options).await;
    assert!(report.passed(), "{report}");
    for step in [
        Step::Connect,
        Step::TextTurn,
        Step::ToolRoundTrip,
        Step::Close,
    ] {
        assert_eq!(outcome(&report, step), Outcome::Passed, "{report}");
    }
    // It declares that it cannot cancel, nor create items: those parts are skipped.
    assert!(
        matches!(outcome(&report, Step::Interrupt), Outcome::Skipped(why) if why.contains("response_cancel")),
        "{report}"
    );
    let history = report.step(Step::History).expect("history");
    assert!(
        history.notes.iter().any(|n| n.contains("create_items")),
        "{report}"
    );
}

#[tokio::test]
async fn the_scripted_model_conforms() {
    // Paced, so that the interrupt lands in the middle of the long answer.
    let model = ScriptedModel::new()
        .pace(Duration::from_millis(2))
        .responder(|request| {
            let text = request.user_text.clone().unwrap_or_default();
            if !request.tool_outputs.is_empty() {
                Reply::speech("It is clear and 21 degrees in Paris.")
            } else if text.contains("weather") {
                Reply::call("get_weather", json!({"city": "Paris"}))
            } else if text.contains("story") {
                Reply::speech("Once upon a time ".repeat(40))
            } else {
                Reply::text("Hello! How can I help?")
            }
        });
    let report = conformance::run(&model, &Options::default()).await;
    assert_all_passed(&report);
    assert_eq!(model.unanswered(), 0);
}

/// A backend that follows the contract for text turns, with one flaw chosen by `flaw`.
fn flawed(flaw: &'static str) -> TaskModel {
    TaskModel::new(move |_settings, mut commands, events| async move {
        events
            .send(ModelEvent::session_updated(Default::default(), true))
            .await?;
        while let Some(command) = commands.recv().await {
            match command {
                ModelCommand::UserMessage { message, respond } => {
                    if flaw != "no echo" {
                        events.user_message(message).await?;
                    }
                    if !respond {
                        continue;
                    }
                    let mut response = events.start_response().await?;
                    let id = response.id().to_owned();
                    let item = response.text("Hello there.").await?;
                    response.complete().await?;
                    match flaw {
                        "second done" => {
                            let done =
                                ModelEvent::response_done(&id, ResponseStatus::Completed, None);
                            events.send(done).await?;
                        }
                        "late audio" => {
                            events
                                .send(ModelEvent::audio(&id, &item, vec![0u8; 480]))
                                .await?
                        }
                        "hang up" => {
                            return Err(realtime_agents::Error::Closed {
                                code: Some(1011),
                                reason: "gone".into(),
                            });
                        }
                        _ => {}
                    }
                }
                ModelCommand::CreateItem { mut item, .. } if flaw == "new ids" => {
                    if let realtime_agents::items::RealtimeItem::Message(m) = item.as_mut() {
                        m.item_id = events.new_id("item");
                    }
                    events.send(ModelEvent::Item(*item)).await?;
                }
                ModelCommand::CreateItem { item, .. } => {
                    events.send(ModelEvent::Item(*item)).await?
                }
                _ => {}
            }
        }
        Ok(())
    })
    .capabilities(
        Capabilities::minimal()
            .response_create(true)
            .create_items(true),
    )
}

async fn violations_of(flaw: &'static str) -> Report {
    let options = Options::default()
        .timeout(Duration::from_millis(500))
        .quiet(Duration::from_millis(100));
    let report = conformance::run(&flawed(flaw), &options).await;
    assert!(!report.passed(), "`{flaw}` passed:\n{report}");
    report
}

#[tokio::test]
async fn the_kit_passes_the_flawless_variant() {
    let report = conformance::run(&flawed("none"), &Options::default()).await;
    assert!(report.passed(), "{report}");
}

#[tokio::test]
async fn the_kit_names_a_missing_user_echo() {
    let report = violations_of("no echo").await;
    let text = report.step(Step::TextTurn).expect("text turn");
    assert!(
        text.violations[0]
            .expected
            .contains("echoing the user message"),
        "{report}"
    );
    assert_eq!(text.violations[0].step, Step::TextTurn);
}

#[tokio::test]
async fn the_kit_names_a_second_response_done() {
    let report = violations_of("second done").await;
    let v = report.violations().next().expect("a violation");
    assert_eq!(v.step, Step::TextTurn);
    assert_eq!(v.expected, "exactly one ResponseDone per started response");
    assert!(v.got.starts_with("a second ResponseDone"), "{report}");
}

#[tokio::test]
async fn the_kit_names_output_after_the_end_of_its_response() {
    let report = violations_of("late audio").await;
    let v = report.violations().next().expect("a violation");
    assert!(v.got.ends_with("after its ResponseDone"), "{report}");
}

#[tokio::test]
async fn the_kit_names_an_unasked_close() {
    let report = violations_of("hang up").await;
    assert!(
        report.violations().any(|v| v.step == Step::TextTurn
            && v.expected == "the connection to stay open until the kit closes it"
            && v.got.contains("1011")),
        "{report}"
    );
}

#[tokio::test]
async fn the_kit_names_an_item_echoed_with_another_id() {
    let report = violations_of("new ids").await;
    let history = report.step(Step::History).expect("history");
    assert_eq!(history.outcome, Outcome::Failed, "{report}");
    assert!(
        history.violations[0]
            .expected
            .starts_with("an Item echoing the created item with its id item_kit"),
        "{report}"
    );
    // Only that step failed.
    assert_eq!(report.violations().count(), 1, "{report}");
}
