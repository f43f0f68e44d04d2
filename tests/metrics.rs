//! The turn figures reach whatever `metrics` recorder the application installed, under the
//! names and units the README documents. One test in this binary: it installs the global
//! recorder.

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use realtime_agents::model::Usage;
use realtime_agents::testing::{Reply, ScriptedModel};
use realtime_agents::{RealtimeAgent, RealtimeRunner, TurnStatus};

#[tokio::test]
async fn a_turn_is_counted_and_timed_through_the_metrics_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let model = ScriptedModel::new().reply(Reply::speech("Hello there.").usage(Usage::new(7, 5)));
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .run(())
        .await
        .unwrap();
    let result = session.run_turn("Hi!").await.unwrap();
    assert_eq!(result.status, TurnStatus::Completed);

    let mut seen: HashMap<String, DebugValue> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = match labels.is_empty() {
            true => key.name().to_owned(),
            false => format!("{}{{{}}}", key.name(), labels.join(",")),
        };
        seen.insert(name, value);
    }
    let counter = |name: &str| match seen.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?} in {seen:?}"),
    };
    let samples = |name: &str| match seen.get(name) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name}: {other:?} in {seen:?}"),
    };
    assert_eq!(counter("realtime_turns_started_total"), 1);
    assert_eq!(counter("realtime_turns_total{status=completed}"), 1);
    assert_eq!(counter("realtime_tokens_total{kind=input}"), 7);
    assert_eq!(counter("realtime_tokens_total{kind=output}"), 5);
    assert_eq!(
        counter("realtime_audio_generated_ms_total"),
        result.timings.audio_generated_ms
    );
    assert!(result.timings.audio_generated_ms > 0);
    assert_eq!(samples("realtime_turn_first_audio_seconds"), 1);
    assert_eq!(samples("realtime_turn_first_transcript_seconds"), 1);
    assert_eq!(samples("realtime_turn_duration_seconds"), 1);
}
