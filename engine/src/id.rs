//! Identifiers validated once, so that a name can be used in a path without escaping tricks:
//! no `/`, no `..`, no control characters, nothing empty.

use std::fmt;

use crate::{Error, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate(&value, $what)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A configured service (`postgresql`, `redis`, …): the first level of every layout.
    ServiceName,
    "service name"
);
name_type!(
    /// A configured tier (`local`, `minio`, `offsite`, …).
    TierName,
    "tier name"
);

fn validate(value: &str, what: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} {value:?}: use letters, digits, '_', '-' and '.' (not leading)"
        )))
    }
}

/// Checks a file-name stem or extension used in an artifact name.
pub fn validate_file_part(value: &str, what: &str) -> Result<()> {
    validate(value, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_tricks() {
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "a b", "é"] {
            assert!(ServiceName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ServiceName::new("postgresql").unwrap().as_str(),
            "postgresql"
        );
        assert!(TierName::new("minio-2").is_ok());
    }
}
