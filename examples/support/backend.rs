//! Which server an example talks to: `--url <ws url>`, else the OpenAI Realtime API when
//! `OPENAI_API_KEY` is set, else a simulator started in-process (offline, no key).

use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;

/// The model to use, and the simulator behind it when there is one (keep it alive while the
/// example runs). What was chosen is reported on stderr, so that stdout stays the output.
pub async fn backend(
    simulator_speed: f64,
) -> Result<(OpenAIRealtimeWebSocketModel, Option<Simulator>), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1));
    let has_key = std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty());
    Ok(match (url, has_key) {
        (Some(url), _) => {
            eprintln!("Using the server at {url}");
            (
                OpenAIRealtimeWebSocketModel::builder().url(url).build(),
                None,
            )
        }
        (None, true) => {
            eprintln!("Using the OpenAI Realtime API (OPENAI_API_KEY is set)");
            (OpenAIRealtimeWebSocketModel::new(), None)
        }
        (None, false) => {
            let sim = Simulator::builder().speed(simulator_speed).start().await?;
            eprintln!(
                "No OPENAI_API_KEY: using the built-in simulator at {}",
                sim.url()
            );
            let model = OpenAIRealtimeWebSocketModel::builder()
                .url(sim.url())
                .build();
            (model, Some(sim))
        }
    })
}
