//! Weights with torchvision's names and layouts, made and run by PyTorch itself, give the
//! same logits in cxr's VGG.
//!
//! Fixture: `tests/fixtures/pytorch/`, made by `tests/fixtures/make_pytorch_vgg.py`
//! (torch and torchvision versions in vgg.json).

use std::path::Path;

use candle_core::ModuleT;
use cxr::nn::vgg::torchvision_name;
use cxr::nn::{VggConfig, VggDepth, vgg};
use serde_json::Value;

use crate::common;
use common::{assert_logits, json_tensor};

#[test]
fn torchvision_named_weights_give_pytorchs_logits() {
    let dir = Path::new("tests/fixtures/pytorch");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vgg.json")).unwrap()).unwrap();
    for (depth, key, base) in [
        (VggDepth::Vgg16, "vgg16", VggConfig::vgg16()),
        (VggDepth::Vgg19, "vgg19", VggConfig::vgg19()),
    ] {
        let cfg = VggConfig {
            input_size: (32, 32),
            classes: 3,
            width_divisor: 16,
            ..base
        };
        let model = vgg(cfg).unwrap();
        model
            .load_weights_renamed(dir.join(format!("{key}_div16.safetensors")), |n| {
                torchvision_name(depth, n)
            })
            .unwrap();
        let case = &fixture["cases"][key];
        let logits = model
            .forward_t(&json_tensor(&case["input"]), false)
            .unwrap();
        assert_logits(&logits, &json_tensor(&case["logits"]), key, 1e-5);
    }
}
