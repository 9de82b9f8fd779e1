//! Secrets by reference: `env:NAME`, `file:PATH`, `vault:PATH#FIELD`, or (discouraged) a literal.
//!
//! A [`Secret`] never prints its value: `Debug` shows `<redacted>` and there is no `Display`, so
//! it cannot reach a log line, an error message or the catalog by accident. Children get secrets
//! through their environment, never through argv.

use std::fmt;

use crate::{Error, Result};

/// Where a secret lives, as written in the config.
#[derive(Clone, PartialEq)]
pub enum SecretRef {
    Env(String),
    File(std::path::PathBuf),
    /// KV path (`secret/zentoria/backup/minio`) and field (`access_key`).
    Vault {
        path: String,
        field: String,
    },
    Literal(Secret),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SecretRef {
    /// Parses a reference; a string without a known prefix is a literal value.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        if let Some(name) = text.strip_prefix("env:") {
            if name.is_empty() {
                return Err("secret reference \"env:\" needs a variable name".into());
            }
            Ok(SecretRef::Env(name.to_owned()))
        } else if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("secret reference \"file:\" needs a path".into());
            }
            Ok(SecretRef::File(path.into()))
        } else if let Some(rest) = text.strip_prefix("vault:") {
            match rest.split_once('#') {
                Some((path, field)) if !path.is_empty() && !field.is_empty() => {
                    Ok(SecretRef::Vault {
                        path: path.to_owned(),
                        field: field.to_owned(),
                    })
                }
                _ => Err(format!(
                    "secret reference {text:?} must look like vault:PATH#FIELD"
                )),
            }
        } else {
            Ok(SecretRef::Literal(Secret(text.to_owned())))
        }
    }

    /// A description that is safe to log: the reference, never a value.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("env:{n}"),
            SecretRef::File(p) => format!("file:{}", p.display()),
            SecretRef::Vault { path, field } => format!("vault:{path}#{field}"),
            SecretRef::Literal(_) => "<literal value in config>".into(),
        }
    }

    /// Reads the secret now. Errors name the reference, never the value.
    pub fn resolve(&self) -> Result<Secret> {
        let fail = |message: String| Error::Secret {
            reference: self.describe(),
            message,
        };
        match self {
            SecretRef::Literal(s) => Ok(s.clone()),
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| fail(format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display()))),
            SecretRef::Vault { path, field } => crate::vault::read(path, field).map(Secret),
        }
    }
}

/// A resolved secret value.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must be handled as a secret from here on.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for handing to a child's environment or an HTTP header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            SecretRef::parse("env:PGPASS").unwrap(),
            SecretRef::Env("PGPASS".into())
        );
        assert!(matches!(
            SecretRef::parse("vault:secret/x#password").unwrap(),
            SecretRef::Vault { .. }
        ));
        assert!(SecretRef::parse("vault:secret/x").is_err());
        assert!(SecretRef::parse("env:").is_err());
    }

    #[test]
    fn values_never_print() {
        let r = SecretRef::parse("hunter2").unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
        let s = r.resolve().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn missing_env_names_reference_only() {
        let e = SecretRef::parse("env:TIERBACK_TEST_SURELY_UNSET")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string().contains("env:TIERBACK_TEST_SURELY_UNSET"),
            "{e}"
        );
    }
}
