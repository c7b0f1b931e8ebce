//! A saved model back from its file alone: the architecture recorded in the file's
//! header is rebuilt, then the weights are loaded into it.

use std::path::Path;

use super::sequential::{MODEL_FORMAT, Sequential};
use super::vgg::{VggConfig, vgg};
use super::xray_cnn::{XrayCnnConfig, xray_cnn};
use crate::{Error, Result};

/// What a safetensors file's header says it holds.
fn header(path: &Path) -> Result<std::collections::HashMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    let not_safetensors = |detail: String| Error::NotAModel {
        path: path.into(),
        detail: format!(
            "not a safetensors file ({detail}); pass a model `cxr train` wrote, such as \
             out/latest/xray_model.safetensors"
        ),
    };
    file.read_exact(&mut len)
        .map_err(|e| not_safetensors(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 || len > 100_000_000 || 8 + len > size {
        return Err(not_safetensors(format!(
            "its header claims {len} bytes of a {size}-byte file"
        )));
    }
    let mut text = vec![0; len as usize];
    file.read_exact(&mut text)
        .map_err(|e| not_safetensors(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| not_safetensors(e.to_string()))?;
    Ok(json["__metadata__"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// Rebuilds the model saved in `path` by [`Sequential::save`] (the tutorial's CNN or a
/// VGG) and loads its weights: the file alone is enough. A training state, a file
/// from elsewhere, or a damaged file is refused with what it is and what to pass.
pub fn load_model(path: impl AsRef<Path>) -> Result<Sequential> {
    let path = path.as_ref();
    let meta = header(path)?;
    let refuse = |problem: String| Error::Weights {
        path: path.into(),
        problems: vec![problem],
    };
    let not_a_model = |detail: &str| Error::NotAModel {
        path: path.into(),
        detail: detail.into(),
    };
    match meta.get("format").map(String::as_str) {
        Some(MODEL_FORMAT) => {}
        Some(f) if f.starts_with("cxr-train-state") => {
            return Err(not_a_model(
                "this is a training state (what `cxr train --resume` takes); pass the model \
                 file the run wrote beside it (xray_model.safetensors)",
            ));
        }
        _ => {
            return Err(not_a_model(
                "no cxr model header: the file holds weights without the architecture that \
                 uses them (an older cxr, or another program); build the model in code and call \
                 `load_weights`, or train again",
            ));
        }
    }
    let architecture: serde_json::Value = meta
        .get("architecture")
        .and_then(|a| serde_json::from_str(a).ok())
        .ok_or_else(|| {
            refuse(format!(
                "the model `{}` was saved without its architecture; build it in code and call `load_weights`",
                meta.get("name").map_or("?", String::as_str)
            ))
        })?;
    let config = architecture["config"].clone();
    let bad_config = |e: serde_json::Error| refuse(format!("unreadable architecture: {e}"));
    let model = match architecture["model"].as_str() {
        Some("xray_cnn") => {
            xray_cnn(serde_json::from_value::<XrayCnnConfig>(config).map_err(bad_config)?)?
        }
        Some("vgg") => vgg(serde_json::from_value::<VggConfig>(config).map_err(bad_config)?)?,
        other => {
            return Err(refuse(format!(
                "cxr does not know how to build a model `{}`; build it in code and call `load_weights`",
                other.unwrap_or("?")
            )));
        }
    };
    model.load_weights(path)?;
    Ok(model)
}
