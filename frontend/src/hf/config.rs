//! Typed access to `config.json`, with errors that name the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::HfError;

/// A parsed `config.json`.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    /// Prepended to key names in messages (`rope_scaling.` for a nested object).
    prefix: String,
    fields: Map<String, Value>,
}

impl Config {
    /// Reads and parses `config.json`.
    pub fn read(path: &Path) -> Result<Config, HfError> {
        let text = std::fs::read_to_string(path).map_err(|source| HfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, HfError> {
        let value: Value = serde_json::from_str(text).map_err(|source| HfError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        match value {
            Value::Object(fields) => Ok(Config {
                path: path.to_path_buf(),
                prefix: String::new(),
                fields,
            }),
            _ => Err(self_error(path, "<root>", "expected a JSON object")),
        }
    }

    /// The file the config came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> HfError {
        self_error(&self.path, &format!("{}{key}", self.prefix), message)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// A required non-negative integer.
    pub fn u64(&self, key: &str) -> Result<u64, HfError> {
        self.opt_u64(key)?
            .ok_or_else(|| self.error(key, "missing (expected a non-negative integer)"))
    }

    /// An optional non-negative integer (`null` counts as absent).
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.error(key, format!("expected a non-negative integer, got {v}"))
            }),
        }
    }

    /// An optional integer with a default.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, HfError> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected a number, got {v}"))),
        }
    }

    /// An optional number with a default.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, HfError> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// An optional boolean with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.error(key, format!("expected true or false, got {v}"))),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected a string, got {v}"))),
        }
    }

    /// An optional list of non-negative integers.
    pub fn opt_u64_list(&self, key: &str) -> Result<Option<Vec<u64>>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64().ok_or_else(|| {
                        self.error(key, format!("expected a list of integers, found {v}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.error(key, format!("expected a list of integers, got {v}"))),
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        self.error(key, format!("expected a list of strings, found {v}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.error(key, format!("expected a list of strings, got {v}"))),
        }
    }

    /// An optional nested object, as a config of its own whose key names are prefixed for
    /// messages (`rope_scaling.factor`).
    pub fn opt_object(&self, key: &str) -> Result<Option<Config>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(Config {
                path: self.path.clone(),
                prefix: format!("{}{key}.", self.prefix),
                fields: fields.clone(),
            })),
            Some(v) => Err(self.error(key, format!("expected an object, got {v}"))),
        }
    }
}

fn self_error(path: &Path, key: &str, message: impl Into<String>) -> HfError {
    HfError::ConfigKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}
