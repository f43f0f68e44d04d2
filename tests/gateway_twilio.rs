//! Phone calls through the gateway, against the simulator (Twilio Media Streams, and one
//! Telnyx call): a Twilio caller that speaks μ-law test speech in real time and plays the
//! answer in real time, echoing marks as Twilio does.

mod gateway_support;

use std::time::Duration;

use gateway_support::twilio::TwilioCall;
use gateway_support::{TestGateway, http, http_with, ulaw_speech, wait_for};
use realtime_agents::gateway::{GatewayEvent, install_prometheus, twilio_signature};
use realtime_agents::simulator::Simulator;
use serde_json::{Value, json};

fn items_created(sim: &Simulator) -> Vec<Value> {
    sim.client_events()
        .into_iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_answered_in_paced_frames_with_tools_dtmf_and_a_clean_stop() {
    // The model streams 4x faster than real time: pacing is the gateway's job.
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let metrics = install_prometheus().expect("the first recorder of this test binary");
    let gw = TestGateway::start(&sim.url(), |b| {
        b.dtmf_to_model(Some(Duration::from_millis(300)))
            .prometheus(metrics)
    })
    .await;

    // The TwiML webhook points Twilio at the stream, with the call's sid as a parameter.
    let (status, twiml) = http(
        "POST",
        &gw.url("/twilio/voice"),
        "CallSid=CA42&From=%2B15550100",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains(&format!("<Stream url=\"wss://{}/twilio/stream\">", gw.addr)),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Parameter name=\"callSid\" value=\"CA42\"/>"),
        "{twiml}"
    );
    assert!(twiml.contains("</Connect><Say>"), "{twiml}");

    let call = TwilioCall::connect(&gw.ws_url("/twilio/stream"), "CA42").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.say(ulaw_speech("What's the weather in Paris?"));

    // The tool ran and the answer came back as audio: wait until it has all been played.
    wait_for(Duration::from_secs(20), "the answer to be played", || {
        call.with_log(|l| {
            l.media_frames() > 100
                && l.media
                    .last()
                    .is_some_and(|(t, _)| t.elapsed() > Duration::from_millis(600))
        })
    })
    .await;
    let outputs: Vec<Value> = items_created(&sim)
        .into_iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1, "one tool call");
    assert!(
        outputs[0]["item"]["output"]
            .as_str()
            .unwrap()
            .contains("Sunny and 22 degrees Celsius in Paris")
    );

    call.with_log(|log| {
        assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
        // Fixed 20 ms frames: 160 bytes of μ-law each.
        assert!(log.media.iter().all(|(_, n)| *n == 160), "frame sizes");
        // Paced in real time with a small lead, although the model sent 4x faster: the
        // frames of the answer took about as long to arrive as they take to play.
        let (first, last) = (log.media[0].0, log.media[log.media.len() - 1].0);
        let span_ms = (last - first).as_millis() as f64;
        let audio_ms = log.media.len() as f64 * 20.0;
        assert!(
            span_ms > audio_ms - 150.0,
            "{} frames arrived in {span_ms} ms",
            log.media.len()
        );
        assert!(
            span_ms < audio_ms + 500.0,
            "{} frames arrived in {span_ms} ms",
            log.media.len()
        );
        // Marks at the mark interval (100 ms), all echoed after playing, none cleared.
        assert!(
            log.marks >= log.media.len() / 5,
            "{} marks for {} frames",
            log.marks,
            log.media.len()
        );
        assert_eq!(log.echoes.len(), log.marks);
        assert!(log.clears.is_empty());
    });

    // DTMF: surfaced at once, and told to the model as one message after the pause.
    for digit in ["4", "2", "#"] {
        call.dtmf(digit);
    }
    wait_for(Duration::from_secs(5), "the DTMF message", || {
        items_created(&sim)
            .iter()
            .any(|e| e["item"]["content"][0]["text"] == "DTMF: 42#")
    })
    .await;
    let digits: Vec<String> = gw
        .events()
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::Dtmf { digit, .. } => Some(digit.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ["4", "2", "#"]);

    // `stop` ends the session cleanly.
    call.stop();
    call.finished(Duration::from_secs(10)).await;
    gw.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(gw.outcomes(), ["completed"]);
    let started = gw.events().iter().find_map(|e| match e {
        GatewayEvent::CallStarted { call } => Some(call.clone()),
        _ => None,
    });
    let started = started.expect("CallStarted");
    assert_eq!(started.carrier_call_id.as_deref(), Some("CA42"));
    assert_eq!(
        started.parameters.get("callSid").map(String::as_str),
        Some("CA42")
    );
    // The call shows in the metrics.
    let (_, metrics) = http("GET", &gw.url("/metrics"), "").await;
    for line in [
        // Other tests of this binary run at once: presence, not values.
        "realtime_gateway_sessions_total{transport=\"twilio\",outcome=\"completed\"}",
        "realtime_gateway_active_sessions{transport=\"twilio\"}",
        "realtime_gateway_first_audio_latency_seconds_bucket{transport=\"twilio\"",
        "realtime_gateway_turns_total{transport=\"twilio\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_the_line_and_truncates_at_the_last_echoed_mark() {
    let sim = Simulator::builder().speed(2.0).start().await.unwrap();
    let gw = TestGateway::start(&sim.url(), |b| b).await;
    let call = TwilioCall::connect(&gw.ws_url("/twilio/stream"), "CA7").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.say(ulaw_speech("Tell me a long story."));

    // Let the story play for about two seconds, then talk over it.
    wait_for(Duration::from_secs(15), "two seconds of story", || {
        call.with_log(|l| l.echoes.last().is_some_and(|e| e.position_ms >= 2000))
    })
    .await;
    call.say(ulaw_speech("What's the weather in Paris?"));
    wait_for(Duration::from_secs(10), "the clear", || {
        call.with_log(|l| !l.clears.is_empty())
    })
    .await;

    let truncate = sim
        .client_events()
        .into_iter()
        .find(|e| e["type"] == "conversation.item.truncate")
        .expect("a conversation.item.truncate");
    let audio_end_ms = truncate["audio_end_ms"].as_u64().unwrap();
    call.with_log(|log| {
        let barge_in = *log.said.last().unwrap();
        let clear_at = log.clears[0].0;
        let echoed: Vec<_> = log
            .echoes
            .iter()
            .filter(|e| !e.cleared && e.at < clear_at)
            .collect();
        // The cut is exactly where an echoed mark said playback was: not wall-clock time, not
        // the audio sent (which ran ahead by the lead and the model's speed-up).
        assert!(
            echoed.iter().any(|e| e.position_ms == audio_end_ms),
            "truncated at {audio_end_ms} ms; echoes: {:?}",
            echoed.iter().map(|e| e.position_ms).collect::<Vec<_>>()
        );
        // ...and no earlier than the last echo before the caller started talking.
        let before_speech = echoed
            .iter()
            .filter(|e| e.at < barge_in)
            .map(|e| e.position_ms)
            .max()
            .unwrap();
        assert!(
            audio_end_ms >= before_speech,
            "{audio_end_ms} < {before_speech}"
        );
        // What the caller heard when `clear` came is about one mark interval (100 ms) plus
        // the echo round trip past the truncation point (300 ms of slack for a busy machine).
        let heard = log.clears[0].1;
        assert!(
            heard >= audio_end_ms && heard <= audio_end_ms + 300,
            "heard {heard}, cut {audio_end_ms}"
        );
    });

    // The question after the barge-in is answered (the tool runs), then the caller vanishes
    // without `stop`: the session still ends.
    wait_for(
        Duration::from_secs(15),
        "the answer after the barge-in",
        || {
            items_created(&sim)
                .iter()
                .any(|e| e["item"]["type"] == "function_call_output")
        },
    )
    .await;
    call.vanish();
    gw.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(gw.outcomes(), ["caller_gone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_and_stream_tokens_admit_only_the_calls_the_webhook_answered() {
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let gw = TestGateway::start(&sim.url(), |b| {
        b.twilio_auth_token("auth-token")
            .stream_secret("stream-secret")
    })
    .await;
    let webhook = format!("https://{}/twilio/voice", gw.addr);
    let form = [("CallSid", "CA77"), ("From", "+15550100")];
    let body = "CallSid=CA77&From=%2B15550100";

    // Unsigned or wrongly signed webhooks are refused.
    assert_eq!(http("POST", &gw.url("/twilio/voice"), body).await.0, 403);
    let forged = twilio_signature("wrong-token", &webhook, &form);
    let headers = [("X-Twilio-Signature", forged.as_str())];
    assert_eq!(
        http_with("POST", &gw.url("/twilio/voice"), body, &headers)
            .await
            .0,
        403
    );
    // A signed one gets TwiML with a token for this call.
    let signed = twilio_signature("auth-token", &webhook, &form);
    let headers = [("X-Twilio-Signature", signed.as_str())];
    let (status, twiml) = http_with("POST", &gw.url("/twilio/voice"), body, &headers).await;
    assert_eq!(status, 200, "{twiml}");
    let token = twiml
        .split("<Parameter name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a token parameter")
        .to_owned();

    // The stream upgrade is signed too.
    let stream = gw.ws_url("/twilio/stream");
    let refused = tokio_tungstenite::connect_async(&stream).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let no_params: [(&str, &str); 0] = [];
    let upgrade = twilio_signature(
        "auth-token",
        &format!("wss://{}/twilio/stream", gw.addr),
        &no_params,
    );

    // A stream for another call with this call's token is closed before any session.
    let thief =
        TwilioCall::connect_with(&stream, "CA78", Some(&upgrade), json!({"token": token})).await;
    let log = thief.log.clone();
    thief.finished(Duration::from_secs(5)).await;
    assert_eq!(log.lock().unwrap().closed, Some(Some(1008)));
    gw.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(gw.outcomes(), ["refused_token"]);
    assert_eq!(sim.connections(), 0, "no session was opened");

    // The call the webhook answered gets its session.
    let call = TwilioCall::connect_with(
        &stream,
        "CA77",
        Some(&upgrade),
        json!({"callSid": "CA77", "token": token}),
    )
    .await;
    wait_for(Duration::from_secs(5), "the session", || {
        sim.connections() == 1
    })
    .await;
    call.stop();
    call.finished(Duration::from_secs(5)).await;
    gw.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(gw.outcomes(), ["refused_token", "completed"]);
}

/// Telnyx is the same bridge with another serializer; this call is A-law (PCMA), which the
/// session speaks natively too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telnyx_call_in_a_law_is_answered_through_the_same_bridge() {
    use base64::Engine as _;
    use futures::{SinkExt, StreamExt};
    use realtime_agents::audio::g711::G711Law;
    use tokio_tungstenite::tungstenite::Message;

    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let gw = TestGateway::start(&sim.url(), |b| b).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("/telnyx/stream"))
        .await
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for event in [
        json!({"event":"connected","version":"1.0.0"}),
        json!({"event":"start","sequence_number":"1","stream_id":"st1","start":{"call_control_id":"v3:abc",
            "media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}}}),
    ] {
        ws.send(Message::text(event.to_string())).await.unwrap();
    }
    // "Hello!" in A-law, then silence, in 20 ms frames (sent at once: the server paces nothing
    // inbound, and its VAD only counts audio).
    let ulaw = ulaw_speech("Hello!");
    let alaw = G711Law::Alaw.encode_vec(&G711Law::Ulaw.decode_vec(&ulaw));
    let mut audio = alaw;
    audio.extend(std::iter::repeat_n(G711Law::Alaw.silence(), 8_000));
    for (i, frame) in audio.chunks(160).enumerate() {
        let media = json!({"event":"media","sequence_number":(i + 2).to_string(),"stream_id":"st1",
            "media":{"track":"inbound","chunk":(i + 1).to_string(),"timestamp":(i * 20).to_string(),
                "payload":b64.encode(frame)}});
        ws.send(Message::text(media.to_string())).await.unwrap();
    }
    let mut frames = 0;
    let mut marks = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while frames < 50 {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the answer")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        match v["event"].as_str() {
            Some("media") => {
                let payload = b64.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
                assert_eq!(payload.len(), 160);
                assert!(
                    v.get("streamSid").is_none() && v.get("stream_id").is_none(),
                    "{v}"
                );
                frames += 1;
            }
            Some("mark") => marks += 1,
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert!(marks > 0);
    let session = sim
        .client_events()
        .into_iter()
        .find(|e| e["type"] == "session.update")
        .unwrap();
    assert_eq!(
        session["session"]["audio"]["input"]["format"]["type"],
        "audio/pcma"
    );
    assert_eq!(
        session["session"]["audio"]["output"]["format"]["type"],
        "audio/pcma"
    );
    ws.send(Message::text(
        json!({"event":"stop","stream_id":"st1","stop":{}}).to_string(),
    ))
    .await
    .unwrap();
    gw.wait_idle(Duration::from_secs(5)).await;
    assert_eq!(gw.outcomes(), ["completed"]);
}
