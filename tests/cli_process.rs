//! The `cxr` binary run as a user runs it, as a process: train with tiny settings, then
//! predict on a real X-ray with the model the run saved and show what it looked at; the refusals a damaged input or
//! an impossible setting must get, each naming what is wrong and exiting non-zero.

use std::path::Path;
use std::process::{Command, Output};

fn cxr(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the cxr binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cxr predict IMAGE --model MODEL`.
fn predict(image: &Path, model: &Path, cwd: &Path) -> Output {
    cxr(
        &[
            "predict",
            image.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ],
        cwd,
    )
}

const XRAY: &str = "data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg";

#[test]
fn train_then_predict_with_the_saved_model_and_refuse_damaged_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let xray = Path::new(env!("CARGO_MANIFEST_DIR")).join(XRAY);
    let run = cxr(
        &[
            "train",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--generated-images",
            "120",
        ],
        dir.path(),
    );
    assert!(run.status.success(), "{}", text(&run));
    let said = text(&run);
    assert!(said.contains("GENERATED"), "{said}");
    let model = out.join("latest").join("xray_model.safetensors");
    assert!(model.is_file(), "{said}");

    // The model file alone is enough: it holds the architecture and the image size.
    let answer = predict(&xray, &model, dir.path());
    let said = text(&answer);
    assert!(answer.status.success(), "{said}");
    assert!(
        said.contains("percent NORMAL") && said.contains("percent PNEUMONIA"),
        "{said}"
    );

    // Half a JPEG: refused, named, never a confident percentage.
    let bytes = std::fs::read(&xray).unwrap();
    let cut = dir.path().join("cut.jpeg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let answer = predict(&cut, &model, dir.path());
    let said = text(&answer);
    assert!(!answer.status.success(), "a cut JPEG was predicted: {said}");
    assert!(
        said.contains("cut.jpeg") && !said.contains("percent"),
        "{said}"
    );

    // What the model looked at: one figure with Grad-CAM and occlusion over the X-ray.
    let maps = dir.path().join("maps");
    let explain = |image: &Path| {
        cxr(
            &[
                "explain",
                image.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--out",
                maps.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    let answer = explain(&xray);
    let said = text(&answer);
    assert!(answer.status.success(), "{said}");
    assert!(said.contains("225 forward passes"), "{said}");
    let figure = maps.join("person1946_bacteria_4874-explained.png");
    let png = image::open(&figure).unwrap();
    assert!(png.width() > 3 * 200, "{}", png.width());
    // The cut JPEG gets no map either.
    let answer = explain(&cut);
    assert!(
        !answer.status.success(),
        "a cut JPEG was explained: {}",
        text(&answer)
    );
    assert!(!maps.join("cut-explained.png").exists());

    // A training state given as a model: named as such.
    let state = out.join("latest").join("train_state.safetensors");
    let answer = predict(&xray, &state, dir.path());
    let said = text(&answer);
    assert!(!answer.status.success(), "{said}");
    assert!(
        said.contains("not a model file") && said.contains("training state"),
        "{said}"
    );
}

#[test]
fn settings_that_cannot_train_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--epochs", "0"),
        ("--learning-rate", "-0.1"),
        ("--image-size", "8"),
    ] {
        let run = cxr(&["train", "--out", "out", flag, value], dir.path());
        let said = text(&run);
        assert!(!run.status.success(), "{flag} {value} trained: {said}");
        assert!(
            !dir.path().join("out").join("latest").exists(),
            "{flag} {value} left a run behind: {said}"
        );
    }
}

/// Settings small enough for a test, with epochs long enough to stop one in the middle.
const TINY: [&str; 6] = [
    "--epochs",
    "4",
    "--image-size",
    "32",
    "--generated-images",
    "400",
];

/// Starts `cxr train --out OUT` with [`TINY`], waits until its first epoch has ended
/// (its line in the history and its training state written: the state is written last),
/// then sends `signal`; returns what it printed and its exit code.
fn train_until_first_epoch_then(signal: &str, out: &Path, cwd: &Path) -> (String, Option<i32>) {
    let child = Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(["train", "--out", out.to_str().unwrap()])
        .args(TINY)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the cxr binary runs");
    let folder = out.join("runs").join("run-001");
    let history = folder.join("history.csv");
    let state = folder.join("train_state.safetensors");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::fs::read_to_string(&history).map_or(0, |h| h.lines().count()) < 2 || !state.is_file()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no epoch ended in 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    (text(&output), output.status.code())
}

/// `cxr train --out OUT` with [`TINY`], continuing the run saved in `state`.
fn resume(out: &Path, state: &Path, cwd: &Path) -> Output {
    cxr(
        &[
            &["train", "--out", out.to_str().unwrap()][..],
            &TINY[..],
            &["--resume", state.to_str().unwrap()][..],
        ]
        .concat(),
        cwd,
    )
}

/// The test predictions of a finished run, without the line naming its folder.
fn predictions(out: &Path) -> String {
    let csv = std::fs::read_to_string(out.join("latest").join("test_predictions.csv")).unwrap();
    csv.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ctrl_c_then_resume_equals_the_run_never_stopped_and_sigkill_leaves_loadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let run = cxr(
        &[
            &["train", "--out", straight.to_str().unwrap()][..],
            &TINY[..],
        ]
        .concat(),
        dir.path(),
    );
    assert!(run.status.success(), "{}", text(&run));

    // Ctrl-C after the first epoch: exit 130, no `latest` claimed, the state kept.
    let stopped = dir.path().join("stopped");
    let (said, code) = train_until_first_epoch_then("-INT", &stopped, dir.path());
    assert_eq!(code, Some(130), "{said}");
    assert!(!stopped.join("latest").exists(), "{said}");
    let state = stopped
        .join("runs")
        .join("run-001")
        .join("train_state.safetensors");
    assert!(said.contains("--resume") && state.is_file(), "{said}");
    let resumed = resume(&stopped, &state, dir.path());
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(
        predictions(&stopped),
        predictions(&straight),
        "the resumed run's test predictions differ from the run never stopped"
    );

    // SIGKILL after the first epoch: whatever the run had written loads.
    let killed = dir.path().join("killed");
    let (said, code) = train_until_first_epoch_then("-KILL", &killed, dir.path());
    assert_eq!(code, None, "{said}");
    assert!(!killed.join("latest").exists());
    let folder = killed.join("runs").join("run-001");
    let model = folder.join("xray_model.safetensors");
    assert!(model.is_file(), "the best model so far was not kept");
    let answer = predict(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(XRAY),
        &model,
        dir.path(),
    );
    assert!(answer.status.success(), "{}", text(&answer));
    let state = folder.join("train_state.safetensors");
    // What a kill in the middle of a write leaves: a temporary file of a dead process.
    let torn = folder.join(".xray_model.safetensors.999999999-0.tmp");
    std::fs::write(&torn, b"half a model").unwrap();
    let resumed = resume(&killed, &state, dir.path());
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("half-written"),
        "{}",
        text(&resumed)
    );
    let leftovers: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
