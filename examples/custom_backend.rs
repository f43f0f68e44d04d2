//! A custom backend as an ordinary async task (`TaskModel`), run through a real session:
//! `cargo run --example custom_backend`.
//!
//! The echo backend speaks back what it gets (user messages, tool outputs) as test speech. A
//! message naming a tool calls it with the JSON after the name: `get_weather {"city": "Paris"}`.

use futures::StreamExt;
use realtime_agents::model::task::TaskModel;
use realtime_agents::model::{Capabilities, ModelCommand, ModelEvent};
use realtime_agents::testing::speech_audio;
use realtime_agents::{FunctionTool, RealtimeAgent, RealtimeRunner, RealtimeSessionEvent as E};

/// What the echo backend does beyond the minimum: it answers requests, calls tools, speaks.
const CAPABILITIES: Capabilities = Capabilities::minimal()
    .response_create(true)
    .function_calls(true)
    .audio_output(true);

/// The echo backend.
pub fn echo_model() -> TaskModel {
    TaskModel::new(|settings, mut commands, events| async move {
        let tools = settings.tools.unwrap_or_default();
        let format = settings.output_format.unwrap_or_default();
        let updated = ModelEvent::session_updated(format, false);
        events.send(updated).await?;
        let mut input = String::new(); // what the next response answers
        while let Some(command) = commands.recv().await {
            let respond = match command {
                ModelCommand::UserMessage { message, respond } => {
                    input = message.plain_text();
                    events.user_message(message).await?;
                    respond
                }
                ModelCommand::ToolOutput {
                    output, respond, ..
                } => {
                    input = output;
                    respond
                }
                ModelCommand::CreateResponse => true,
                _ => false,
            };
            if !respond {
                continue;
            }
            let mut response = events.start_response().await?;
            if let Some(tool) = tools.iter().find(|t| input.contains(&t.name)) {
                let args = input.split_once(&tool.name).map(|(_, a)| a.trim());
                let args = args.filter(|a| !a.is_empty()).unwrap_or("{}");
                response.function_call(&tool.name, args).await?;
            } else {
                let audio = speech_audio(&input, format);
                response.speech(&input, audio).await?;
            }
            response.complete().await?;
        }
        Ok(())
    })
    .capabilities(CAPABILITIES)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct City {
    city: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let weather = FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
        Ok::<_, String>(format!("Sunny in {}.", a.city))
    });
    let agent = RealtimeAgent::new("Echo").tool(weather);
    let runner = RealtimeRunner::new(agent).model(echo_model());
    let mut session = runner.run(()).await?;
    let ask = r#"get_weather {"city": "Paris"}"#;
    session.send_message(ask).await?;
    // The first response calls the tool, the second speaks its output.
    let (mut said, mut responses) = (String::new(), 0);
    while let Some(event) = session.next().await {
        match event {
            E::TranscriptDelta { delta, .. } => said.push_str(&delta),
            E::AgentEnd { .. } if responses == 1 => break,
            E::AgentEnd { .. } => responses += 1,
            E::Error { error } => return Err(error.into()),
            _ => {}
        }
    }
    session.close().await;
    println!("Echo said: {said}");
    assert_eq!(said, "Sunny in Paris.");
    Ok(())
}
