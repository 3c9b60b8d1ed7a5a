//! The one error every TOML file the project reads reports (profiles, project files, the
//! devnet assumptions): which file, and what is wrong with it.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not TOML, or not the shape the format needs (toml names the line and the field).
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    /// Well formed, but a value breaks a rule of the format.
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
}

impl FileError {
    pub fn invalid(source_name: &str, message: impl Into<String>) -> FileError {
        FileError::Invalid {
            source_name: source_name.to_owned(),
            message: message.into(),
        }
    }
}

/// Parses TOML text; `source_name` (usually the path) prefixes every error.
pub fn from_toml<T: DeserializeOwned>(text: &str, source_name: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError::Parse {
        source_name: source_name.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}
