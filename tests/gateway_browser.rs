//! The gateway's web page in a real headless Chromium, with a fake microphone playing test
//! speech: capture worklet -> socket -> session (simulator) -> socket -> playback worklet.

mod gateway_support;

use std::time::Duration;

use gateway_support::cdp::{Browser, chromium_or_skip};
use gateway_support::{Part, TestGateway, speech_wav};
use realtime_agents::simulator::Simulator;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_hears_the_caller_shows_the_tool_call_and_plays_the_answer() {
    if !chromium_or_skip("the_page_hears_the_caller_shows_the_tool_call_and_plays_the_answer") {
        return;
    }
    let sim = Simulator::builder().speed(2.0).start().await.unwrap();
    let gw = TestGateway::start(&sim.url(), |b| b).await;
    let wav = speech_wav(
        "weather",
        &[
            Part::Silence(500),
            Part::Say("What's the weather in Paris?"),
            Part::Silence(3000),
        ],
    );
    let mut page = Browser::launch(&gw.url("/?autostart=1&raw=1"), &wav).await;

    let state = page
        .wait_for(
            "window.__voiceTest && __voiceTest.tools.some(t => t.output !== undefined) && \
             __voiceTest.transcript.some(t => t.role === 'assistant' && t.text.includes('Celsius in Paris')) && \
             __voiceTest.playedMs > 1500",
            Duration::from_secs(60),
            "the transcript, the tool call and the played answer",
        )
        .await;
    let transcript = state["transcript"].as_array().unwrap();
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "user" && t["text"] == "What's the weather in Paris?"),
        "{transcript:?}"
    );
    let tool = &state["tools"][0];
    assert_eq!(tool["tool"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(tool["arguments"].as_str().unwrap()).unwrap()["city"],
        "Paris"
    );
    assert_eq!(tool["output"], "Sunny and 22 degrees Celsius in Paris");
    let answer = transcript
        .iter()
        .find(|t| t["role"] == "assistant")
        .unwrap();
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("Sunny and 22 degrees Celsius in Paris"),
        "{answer}"
    );
    // Audio was played, and the playback worklet reported it to the gateway.
    assert!(state["playedMs"].as_f64().unwrap() > 1500.0, "{state}");
    assert!(!state["reports"].as_array().unwrap().is_empty());
    assert_eq!(state["errors"], serde_json::json!([]));
    // The rendered page shows them too.
    let text = page
        .eval("document.getElementById('transcript').innerText")
        .await;
    assert!(text.as_str().unwrap().contains("get_weather"), "{text}");
    assert!(page.console_errors.is_empty(), "{:?}", page.console_errors);

    // Closing the page ends the session.
    drop(page);
    gw.wait_idle(Duration::from_secs(10)).await;
    let _ = std::fs::remove_file(wav);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_truncates_where_the_page_said_it_had_played() {
    if !chromium_or_skip("barge_in_truncates_where_the_page_said_it_had_played") {
        return;
    }
    let sim = Simulator::builder().speed(2.0).start().await.unwrap();
    let gw = TestGateway::start(&sim.url(), |b| b).await;
    let wav = speech_wav(
        "barge-in",
        &[
            Part::Silence(500),
            Part::Say("Tell me a long story."),
            Part::Silence(4500),
            Part::Say("What's the weather in Paris?"),
            Part::Silence(3000),
        ],
    );
    let mut page = Browser::launch(&gw.url("/?autostart=1&raw=1"), &wav).await;
    let state = page
        .wait_for(
            "window.__voiceTest && __voiceTest.interrupts.length > 0 && __voiceTest.interrupts[0].flushedMs !== null",
            Duration::from_secs(60),
            "the barge-in",
        )
        .await;
    let cut = &state["interrupts"][0];
    let item = cut["itemId"].as_str().unwrap();
    let server_ms = cut["serverPlayedMs"].as_u64().unwrap();
    let flushed_ms = cut["flushedMs"].as_u64().unwrap();
    assert!(
        server_ms > 1000,
        "the story played for a while first: {cut}"
    );

    // The session truncated the story exactly where the page last said it had played...
    let truncate = sim
        .client_events()
        .into_iter()
        .find(|e| e["type"] == "conversation.item.truncate")
        .expect("a conversation.item.truncate");
    assert_eq!(truncate["item_id"], item);
    assert_eq!(truncate["audio_end_ms"].as_u64(), Some(server_ms));
    let reported: Vec<u64> = state["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["itemId"] == item)
        .map(|r| r["ms"].as_u64().unwrap())
        .collect();
    assert!(
        reported.contains(&server_ms),
        "cut at {server_ms}; reports {reported:?}"
    );
    // ...which trails what the worklet had played when it flushed by at most a report
    // interval, the output latency and a round trip.
    assert!(
        flushed_ms >= server_ms && flushed_ms <= server_ms + 400,
        "flushed at {flushed_ms}, cut at {server_ms}"
    );
    // The question that interrupted is answered.
    page.wait_for(
        "__voiceTest.tools.some(t => t.output !== undefined)",
        Duration::from_secs(30),
        "the tool call after the barge-in",
    )
    .await;
    drop(page);
    gw.wait_idle(Duration::from_secs(10)).await;
    let _ = std::fs::remove_file(wav);
}
