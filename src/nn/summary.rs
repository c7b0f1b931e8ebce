//! Keras-style model summaries: one row per layer with its output shape and parameters.

use std::fmt;

/// One layer in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// The layer's name, also the prefix of its weights (`block1_conv1.weight`).
    pub name: String,
    /// Its Keras class name (`Conv2D`, `SeparableConv2D`, ...).
    pub kind: String,
    /// Output shape without the batch axis, channels first as the tensors are.
    pub output_shape: Vec<usize>,
    /// Parameters that training changes.
    pub trainable: usize,
    /// Parameters it keeps but does not train (a batch norm's running statistics).
    pub non_trainable: usize,
}

/// A model's layers and parameter counts, printed like Keras's `model.summary()`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// The model's name.
    pub name: String,
    /// The layers in order.
    pub rows: Vec<LayerRow>,
}

impl Summary {
    /// Every parameter.
    pub fn total_params(&self) -> usize {
        self.trainable_params() + self.non_trainable_params()
    }

    /// Parameters that training changes.
    pub fn trainable_params(&self) -> usize {
        self.rows.iter().map(|r| r.trainable).sum()
    }

    /// Parameters kept but not trained.
    pub fn non_trainable_params(&self) -> usize {
        self.rows.iter().map(|r| r.non_trainable).sum()
    }

    /// The row of a layer, by name.
    pub fn layer(&self, name: &str) -> Option<&LayerRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Shows the table in a notebook, as Keras prints it.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/plain\n{self}\nEVCXR_END_CONTENT");
    }
}

/// 138357544 as "138,357,544".
pub fn with_commas(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(params: usize) -> String {
    format!("{:.2} MB", params as f64 * 4.0 / (1024.0 * 1024.0))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |s: &[usize]| {
            let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
            format!("(None, {})", dims.join(", "))
        };
        let rule = "─".repeat(78);
        writeln!(f, "Model: \"{}\"", self.name)?;
        writeln!(f, "{rule}")?;
        writeln!(
            f,
            "{:<36}{:<28}{:>14}",
            "Layer (type)", "Output Shape", "Param #"
        )?;
        writeln!(f, "{}", "═".repeat(78))?;
        for row in &self.rows {
            let layer = format!("{} ({})", row.name, row.kind);
            let params = with_commas(row.trainable + row.non_trainable);
            writeln!(f, "{layer:<36}{:<28}{params:>14}", shape(&row.output_shape))?;
        }
        writeln!(f, "{rule}")?;
        writeln!(
            f,
            " Total params: {} ({})",
            with_commas(self.total_params()),
            mb(self.total_params())
        )?;
        writeln!(
            f,
            " Trainable params: {} ({})",
            with_commas(self.trainable_params()),
            mb(self.trainable_params())
        )?;
        write!(
            f,
            " Non-trainable params: {} ({})",
            with_commas(self.non_trainable_params()),
            mb(self.non_trainable_params())
        )
    }
}
