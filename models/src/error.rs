//! The one error type of the models crate: each message says what went wrong and
//! what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Input that cannot be used as it is (missing files, bad columns, empty archive).
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The feature columns differ from the ones the model was trained on.
    #[error("the features do not match the model: {0}")]
    Schema(String),
    #[error("training failed: {0}")]
    Train(String),
    #[error("reading the archive with polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
}

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
