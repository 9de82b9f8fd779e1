//! `[mount]`: settings of `tierback mount`.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigFile;
use super::checks::mode;
use crate::Result;
use crate::units::parse_size;

#[derive(Debug, Clone)]
pub struct MountConfig {
    pub cache_size: u64,
    pub allow_other: bool,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub file_mode: u32,
    pub dir_mode: u32,
    pub audit_log: Option<PathBuf>,
    /// The audit log is rotated (to `NAME.1`, …) when a line would take it past this.
    pub audit_log_max_size: u64,
    /// Where `mount --daemon` writes its log (a foreground mount logs to stderr).
    pub log_file: Option<PathBuf>,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            cache_size: 256 << 20,
            allow_other: false,
            owner: None,
            group: None,
            file_mode: 0o444,
            dir_mode: 0o555,
            audit_log: None,
            audit_log_max_size: 64 << 20,
            log_file: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    cache_size: Option<Spanned<String>>,
    allow_other: Option<bool>,
    owner: Option<String>,
    group: Option<String>,
    file_mode: Option<Spanned<String>>,
    dir_mode: Option<Spanned<String>>,
    audit_log: Option<PathBuf>,
    audit_log_max_size: Option<Spanned<String>>,
    log_file: Option<PathBuf>,
}

impl MountConfig {
    pub(super) fn parse(file: &ConfigFile<'_>, raw: Option<RawMount>) -> Result<MountConfig> {
        let at = |span, message| file.at(span, message);
        let resolve = |p| file.resolve(p);
        let d = MountConfig::default();
        let Some(m) = raw else {
            return Ok(d);
        };
        Ok({
            MountConfig {
                cache_size: match m.cache_size {
                    Some(s) => parse_size(s.get_ref())
                        .map_err(|e| at(s.span(), format!("mount.cache_size: {e}")))?,
                    None => d.cache_size,
                },
                allow_other: m.allow_other.unwrap_or(false),
                owner: m.owner,
                group: m.group,
                file_mode: mode(m.file_mode, d.file_mode).map_err(|(s, e)| at(s, e))?,
                dir_mode: mode(m.dir_mode, d.dir_mode).map_err(|(s, e)| at(s, e))?,
                audit_log: m.audit_log.map(&resolve),
                audit_log_max_size: match m.audit_log_max_size {
                    Some(s) => parse_size(s.get_ref())
                        .and_then(|n| match n {
                            0 => Err("must be more than 0".to_owned()),
                            n => Ok(n),
                        })
                        .map_err(|e| at(s.span(), format!("mount.audit_log_max_size: {e}")))?,
                    None => d.audit_log_max_size,
                },
                log_file: m.log_file.map(&resolve),
            }
        })
    }
}
