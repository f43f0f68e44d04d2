//! Microphone → speaker loopback through the same path a voice agent uses: capture, resample
//! to 24 kHz PCM16 chunks, then play them back through the jitter buffer and the speaker's
//! resampler. Useful to check devices and hear the pipeline's latency.
//!
//! ```sh
//! cargo run --example audio_loopback --features audio -- [seconds] [input-device] [output-device]
//! ```
//! Use headphones: with speakers this feeds back.

use std::time::Duration;

use realtime_agents::audio::{
    AudioDeviceEvent, Microphone, MicrophoneConfig, Speaker, SpeakerConfig, input_devices,
    output_devices,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let input = args.next();
    let output = args.next();

    println!("inputs:  {:?}", input_devices()?);
    println!("outputs: {:?}", output_devices()?);

    let mut mic_config = MicrophoneConfig::default();
    if let Some(name) = input {
        mic_config = mic_config.device(name);
    }
    let mut speaker_config = SpeakerConfig::default();
    if let Some(name) = output {
        speaker_config = speaker_config.device(name);
    }
    let mut mic = Microphone::open(mic_config)?;
    let mut speaker = Speaker::open(speaker_config)?;
    println!(
        "mic: {} at {} Hz x{}; speaker: {} at {} Hz x{}",
        mic.device().name,
        mic.device_sample_rate(),
        mic.device_channels(),
        speaker.device().name,
        speaker.device_sample_rate(),
        speaker.device_channels(),
    );

    for mut events in [mic.take_events(), speaker.take_events()]
        .into_iter()
        .flatten()
    {
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    AudioDeviceEvent::Error {
                        direction,
                        kind,
                        message,
                        ..
                    } => {
                        eprintln!("{direction:?} device error ({kind}): {message}")
                    }
                    other => eprintln!("{other:?}"),
                }
            }
        });
    }

    let deadline = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            chunk = mic.next_chunk() => match chunk {
                Some(chunk) => speaker.push_pcm16(&chunk),
                None => break,
            },
        }
    }
    let tracker = speaker.tracker();
    println!(
        "played {:.1} s, {:?}",
        tracker.played_frames() as f64 / f64::from(tracker.rate()),
        speaker.stats()
    );
    Ok(())
}
