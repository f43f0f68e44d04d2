//! Background runs: 1,000 concurrent `RunHandle`s against one simulator (speed 0), some
//! cancelled with a reason before they connect, some in the middle of their turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    Error, FunctionTool, OneShotResult, RealtimeAgent, RealtimeRunner, RealtimeSessionEvent,
    RunHandle, RunStatus, SessionOptions, TurnStatus,
};
use schemars::JsonSchema;
use serde::Deserialize;

const RUNS: usize = 1_000;
/// Every `EARLY`th run is cancelled right after it is dispatched.
const EARLY: usize = 7;
/// Every `MIDWAY`th run (not cancelled early) asks for a tool that never answers, and is
/// cancelled while the tool runs.
const MIDWAY: usize = 10;

#[derive(Deserialize, JsonSchema)]
struct Order {}

fn assert_handle_traits<T: Clone + Send + Sync + 'static>() {}

/// The reason a run was cancelled with, and whether its result says so everywhere.
fn cancelled_with(result: &realtime_agents::Result<OneShotResult>, reason: &str) -> bool {
    let is_reason = |e: &Error| matches!(e, Error::Cancelled { reason: r } if r == reason);
    match result {
        Err(error) => is_reason(error),
        Ok(run) => {
            let closed = run.events.last().is_some_and(
                |e| matches!(e, RealtimeSessionEvent::Closed { error: Some(e) } if is_reason(e)),
            );
            run.status == TurnStatus::Cancelled
                && run.error.as_ref().is_some_and(is_reason)
                && run.turn.error.as_ref().is_some_and(is_reason)
                && closed
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_background_runs_some_cancelled() {
    assert_handle_traits::<RunHandle>();
    let sim = Simulator::builder()
        .speed(0.0)
        .start()
        .await
        .expect("simulator starts");
    let tools_running = Arc::new(AtomicUsize::new(0));
    let stuck = FunctionTool::new("order_status", "The status of an order.", {
        let tools_running = tools_running.clone();
        move |_: Order| {
            tools_running.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, String>("shipped")
            }
        }
    });
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(stuck)).model(model);

    let outcome = tokio::time::timeout(Duration::from_secs(240), async {
        let mut runs = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let message = if i % EARLY != 0 && i % MIDWAY == 0 {
                format!("Run {i}: what is my order status?")
            } else {
                format!("Run {i} reporting.")
            };
            let run = runner.dispatch(message, SessionOptions::new());
            if i % EARLY == 0 {
                run.cancel(format!("early {i}"));
                run.cancel("a second reason is ignored");
            }
            runs.push(run);
        }
        let midway: Vec<usize> = (0..RUNS)
            .filter(|i| i % EARLY != 0 && i % MIDWAY == 0)
            .collect();
        // Wait until every midway run is inside its tool call: its turn has begun.
        while tools_running.load(Ordering::SeqCst) < midway.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for &i in &midway {
            assert_eq!(runs[i].status(), RunStatus::Running, "run {i}");
            assert!(!runs[i].is_done());
            // Cancelled from a clone on another task: the handle is shared.
            let run = runs[i].clone();
            tokio::spawn(async move { run.cancel(format!("midway {i}")) });
        }
        let mut results = Vec::with_capacity(RUNS);
        for run in &runs {
            results.push(run.wait().await);
        }
        (runs, results, midway)
    })
    .await;
    let (runs, results, midway) = outcome.expect("every run ends within the time limit");

    let (mut completed, mut early, mut mid) = (0, 0, 0);
    for (i, (run, result)) in runs.iter().zip(&results).enumerate() {
        assert!(run.is_done(), "run {i}");
        if i % EARLY == 0 {
            assert_eq!(run.status(), RunStatus::Cancelled, "run {i}: {result:?}");
            assert!(
                cancelled_with(result, &format!("early {i}")),
                "run {i}: {result:?}"
            );
            early += 1;
        } else if midway.contains(&i) {
            assert_eq!(run.status(), RunStatus::Cancelled, "run {i}: {result:?}");
            let result_ok = result.as_ref().expect("the turn had begun");
            assert!(
                cancelled_with(result, &format!("midway {i}")),
                "run {i}: {result_ok:?}"
            );
            let call = &result_ok.turn.tool_calls;
            assert!(
                call.iter().any(|c| c.tool == "order_status"),
                "run {i}: {call:?}"
            );
            mid += 1;
        } else {
            assert_eq!(run.status(), RunStatus::Completed, "run {i}: {result:?}");
            let result = result.as_ref().expect("completed");
            // Each run got its own answer: nothing crossed between sessions.
            assert_eq!(
                result.text,
                format!("You said: Run {i} reporting."),
                "run {i}"
            );
            assert_eq!(result.status, TurnStatus::Completed);
            assert!(result.usage.total_tokens > 0 && result.cost_usd.is_some_and(|c| c > 0.0));
            assert!(result.error.is_none(), "run {i}: {:?}", result.error);
            assert!(matches!(
                result.events.last(),
                Some(RealtimeSessionEvent::Closed { error: None })
            ));
            completed += 1;
        }
        // A finished run ignores a late cancel, and every handle gets the same result.
        let status = run.status();
        run.cancel("too late");
        assert_eq!(run.status(), status);
        let again = run.clone().wait().await;
        let id = |r: &realtime_agents::Result<OneShotResult>| {
            r.as_ref()
                .map(|r| r.session_id.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(id(&again), id(result), "run {i}");
    }
    assert_eq!(early, RUNS.div_ceil(EARLY));
    assert_eq!(mid, midway.len());
    assert_eq!(completed + early + mid, RUNS);
    let ids: std::collections::HashSet<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.session_id.clone())
        .collect();
    // Every run that had a session (an early cancel may land once it is up) had its own.
    let sessions = results.iter().filter(|r| r.is_ok()).count();
    assert!(sessions >= completed + mid);
    assert_eq!(ids.len(), sessions, "session ids are unique");
}
