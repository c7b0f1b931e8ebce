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
