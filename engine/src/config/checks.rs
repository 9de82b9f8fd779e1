//! Checks of values several sections share (levels, block sizes, modes, copy policies, TLS).

use std::path::PathBuf;

use toml::Spanned;

use super::Mistake;
use crate::artifact::format::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::tls::Transport;
use crate::units::parse_size;

/// A `copy` policy: which backups a tier receives.
pub fn check_copy(list: Spanned<Vec<String>>, owner: &str) -> Result<Vec<String>, Mistake> {
    for v in list.get_ref() {
        if !matches!(
            v.as_str(),
            "all" | "hourly" | "daily" | "weekly" | "monthly"
        ) {
            return Err((
                list.span(),
                format!("{owner} copy: {v:?} is not one of all, hourly, daily, weekly, monthly"),
            ));
        }
    }
    Ok(list.into_inner())
}

/// An endpoint's `ca_file` (resolved, and checked to hold a PEM certificate now so a typo is
/// a config error with its line) and `allow_insecure_http`.
pub fn transport_of(
    ca_file: &Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Transport, Mistake> {
    let ca_file = match ca_file {
        Some(p) => {
            let path = resolve(p.get_ref().clone());
            crate::tls::read_ca(&path).map_err(|e| (p.span(), e.to_string()))?;
            Some(path)
        }
        None => None,
    };
    Ok(Transport {
        ca_file,
        allow_insecure_http: allow_insecure_http.unwrap_or(false),
    })
}

pub(super) fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

pub(super) fn check_level(l: &Spanned<i64>) -> Result<i32, String> {
    match *l.get_ref() {
        v @ 1..=12 => Ok(v as i32),
        v => Err(format!(
            "compression_level {v} is out of range 1..=12 (gzip levels 1-9; 10-12 are slower, smaller)"
        )),
    }
}

pub(super) fn check_block_size(b: &Spanned<String>) -> Result<usize, String> {
    let v = parse_size(b.get_ref()).map_err(|e| format!("block_size: {e}"))?;
    if !(MIN_BLOCK_SIZE as u64..=MAX_BLOCK_SIZE as u64).contains(&v) {
        return Err(format!(
            "block_size {} must be between 4KiB and 64MiB",
            b.get_ref()
        ));
    }
    Ok(v as usize)
}

pub(super) fn mode(v: Option<Spanned<String>>, default: u32) -> Result<u32, Mistake> {
    match v {
        None => Ok(default),
        Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err((
                s.span(),
                format!(
                    "mode {:?} is not an octal permission like \"0440\"",
                    s.get_ref()
                ),
            )),
        },
    }
}
