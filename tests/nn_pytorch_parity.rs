//! Weights with torchvision's names and layouts, made and run by PyTorch itself, give the
//! same logits in cxr's VGG.
//!
//! Fixture: `tests/fixtures/pytorch/`, made by `tests/fixtures/make_pytorch_vgg.py`
//! (torch and torchvision versions in vgg.json).

use std::path::Path;

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr::nn::vgg::torchvision_name;
use cxr::nn::{VggConfig, VggDepth, vgg};
use serde_json::Value;

fn tensor(value: &Value, dims: &[usize]) -> Tensor {
    fn flatten(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            number => out.push(number.as_f64().unwrap() as f32),
        }
    }
    let mut data = Vec::new();
    flatten(value, &mut data);
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

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
        let varmap = VarMap::new();
        let model = vgg(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        cxr::nn::load(&varmap, dir.join(format!("{key}_div16.safetensors")), |n| {
            torchvision_name(depth, n)
        })
        .unwrap();
        let case = &fixture["cases"][key];
        let logits = model
            .forward_t(&tensor(&case["input"], &[2, 3, 32, 32]), false)
            .unwrap();
        let expected = tensor(&case["logits"], &[2, 3]);
        let scale = expected
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1.0);
        let diff = (&logits - &expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!(
            "{key}: logits {:?}, max difference {diff}",
            expected.to_vec2::<f32>().unwrap()
        );
        assert!(
            diff / scale < 1e-5,
            "{key}: max difference {diff} on logits of size {scale}"
        );
    }
}
