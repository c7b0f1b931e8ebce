//! Class labels and patient ids, read from paths the way the Kermany data set names them.

use std::path::Path;

/// The two classes of the course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Normal,
    Pneumonia,
}

impl Label {
    /// Both labels in the order Keras's `flow_from_directory` numbers them (alphabetical).
    pub const ALL: [Label; 2] = [Label::Normal, Label::Pneumonia];

    /// The label a class folder stands for, ignoring case: `NORMAL` and `normal` are
    /// [`Label::Normal`]; `PNEUMONIA` and lesson 3's `opacity` (a lung opacity is what
    /// pneumonia looks like on a radiograph) are [`Label::Pneumonia`].
    pub fn from_folder_name(name: &str) -> Option<Label> {
        match name.to_ascii_lowercase().as_str() {
            "normal" => Some(Label::Normal),
            "pneumonia" | "opacity" => Some(Label::Pneumonia),
            _ => None,
        }
    }

    /// The class of a path as the Keras tutorial's `get_label` reads it: PNEUMONIA when
    /// the folder above the file is `PNEUMONIA`, NORMAL otherwise (`/` or `\` between
    /// folders).
    pub fn from_path(path: &str) -> Label {
        let mut parts = path.rsplit(['/', '\\']);
        parts.next();
        match parts.next() {
            Some("PNEUMONIA") => Label::Pneumonia,
            _ => Label::Normal,
        }
    }

    /// The class number: 0 for NORMAL, 1 for PNEUMONIA (the positive class).
    pub fn index(self) -> usize {
        match self {
            Label::Normal => 0,
            Label::Pneumonia => 1,
        }
    }

    /// The folder name of the Kermany data set.
    pub fn name(self) -> &'static str {
        match self {
            Label::Normal => "NORMAL",
            Label::Pneumonia => "PNEUMONIA",
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The patient of a path, with its class so that ids of the two classes never collide
/// (Kermany numbers NORMAL and PNEUMONIA patients separately); the path itself when the
/// name has no patient: the key that keeps a patient's images in one part.
pub fn patient_key(path: &str) -> String {
    let id = patient_id(Path::new(path)).unwrap_or_else(|| path.to_string());
    format!("{}-{id}", Label::from_path(path))
}

/// The patient a Kermany file belongs to, from its name:
/// `NORMAL2-IM-1427-0001.jpeg` is patient `1427`, `person1946_bacteria_4874.jpeg` is
/// patient `1946`. Other names give `None`.
pub fn patient_id(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let digits = |s: &str| -> Option<String> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_string())
    };
    if let Some(rest) = stem.strip_prefix("person") {
        // person<patient>_<bacteria|virus>_<image>
        let mut parts = rest.split('_');
        let patient = digits(parts.next()?)?;
        let kind = parts.next()?;
        let image = parts.next()?;
        return (matches!(kind, "bacteria" | "virus")
            && digits(image).is_some()
            && parts.next().is_none())
        .then_some(patient);
    }
    // NORMAL2-IM-<patient>-<view>, also the older IM-<patient>-<view>
    let parts: Vec<&str> = stem.split('-').collect();
    match parts.as_slice() {
        [.., "IM", patient, view] if digits(view).is_some() => digits(patient),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids_follow_the_kermany_names() {
        let cases = [
            ("NORMAL2-IM-1427-0001.jpeg", Some("1427")),
            ("IM-0115-0001.jpeg", Some("0115")),
            ("person1946_bacteria_4874.jpeg", Some("1946")),
            ("person3_virus_15.jpeg", Some("3")),
            ("person3_fungus_15.jpeg", None),
            ("scan.png", None),
            ("NORMAL2-IM-x-0001.jpeg", None),
        ];
        for (name, want) in cases {
            assert_eq!(patient_id(Path::new(name)).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn labels_read_any_case_and_lesson_three_names() {
        assert_eq!(Label::from_folder_name("NORMAL"), Some(Label::Normal));
        assert_eq!(Label::from_folder_name("normal"), Some(Label::Normal));
        assert_eq!(Label::from_folder_name("Pneumonia"), Some(Label::Pneumonia));
        assert_eq!(Label::from_folder_name("opacity"), Some(Label::Pneumonia));
        assert_eq!(Label::from_folder_name("covid"), None);
    }
}
