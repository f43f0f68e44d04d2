//! Headless ALSA for device tests.
//!
//! ALSA reads its configuration once per process, so each device test re-runs itself in a child
//! process whose `ALSA_CONFIG_PATH` points at a configuration written by the test: `default`
//! and `null` are ALSA `null` devices, `rta_out` is a `file` device that records everything
//! played into `out.raw` in the test's temporary directory, and `rta_in` is a `file` device
//! that captures from `in.raw` there; `rta_broken` points at a sound card that does not exist. Nothing from the host's ALSA setup is read, so the tests
//! run the same on a laptop and in CI (only `libasound2` is needed at run time).

use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD_ENV: &str = "RTA_ALSA_SANDBOX";

/// The ALSA configuration for a sandbox directory.
pub fn config(dir: &Path) -> String {
    let out = dir.join("out.raw");
    let input = dir.join("in.raw");
    format!(
        r#"pcm.!default {{ type null }}
pcm.null {{
  type null
  hint {{ show on description "Discard all samples" }}
}}
pcm.rta_out {{
  type file
  slave.pcm "null"
  file "{out}"
  format "raw"
  hint {{ show on description "Test sink writing {out}" }}
}}
pcm.rta_broken {{
  type hw
  card 99
  hint {{ show on description "A sound card that does not exist" }}
}}
pcm.rta_in {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{input}"
  format "raw"
  hint {{ show on description "Test source reading {input}" }}
}}
"#,
        out = out.display(),
        input = input.display(),
    )
}

/// In the parent test process: runs `test_name` in a child with the sandbox configured and
/// returns `None` after asserting that it passed. In the child: returns the sandbox directory,
/// and the test body runs.
///
/// `prepare` runs in the parent before the child starts (e.g. to write `in.raw`).
pub fn sandbox(test_name: &str, prepare: impl FnOnce(&Path)) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return Some(PathBuf::from(dir));
    }
    let dir = std::env::temp_dir().join(format!("rta-alsa-{}-{test_name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create sandbox dir");
    let conf = dir.join("asound.conf");
    std::fs::write(&conf, config(&dir)).expect("write ALSA config");
    prepare(&dir);
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("ALSA_CONFIG_PATH", &conf)
        .env(CHILD_ENV, &dir)
        .output()
        .expect("run child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ran = stdout.contains("1 passed");
    // Shown with `--nocapture` (or on failure).
    print!("{stdout}");
    eprint!("{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && ran,
        "child test {test_name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    None
}
