//! `[services.NAME]`: the keys every service shares are read here; the rest of the table goes to
//! the driver's own settings (`source/<driver>.rs`, listed in [`crate::source::DRIVERS`]). Both
//! are deserialized from one parse of the file, so every error still names its line.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::checks::{check_block_size, check_copy, check_level, transport_of};
use super::retention::{RawRetention, Retention, retention};
use super::{ConfigFile, Defaults, Mistake, TierConfig};
use crate::Result;
use crate::id::ServiceName;
use crate::secret::SecretRef;
use crate::source::{DRIVERS, Source};
use crate::tls::Transport;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: ServiceName,
    pub schedule: Vec<String>,
    pub compression_level: i32,
    pub block_size: usize,
    /// This service's own retention, used on every tier instead of the tier's policy.
    pub retention: Option<Retention>,
    /// This service's retention on particular tiers (`tier_retention = { offsite = {…} }`),
    /// before `retention` and the tier's own.
    pub tier_retention: BTreeMap<String, Retention>,
    /// This service's own copy policy, used for every tier instead of the tier's `copy`.
    pub copy: Option<Vec<String>>,
    /// The configured driver: what a backup takes, and how a restore test checks it.
    pub driver: Arc<dyn Source>,
}

impl ServiceConfig {
    /// The driver as its own type, for the few places that need one driver's settings (the
    /// WAL archive and the base backups it rolls forward).
    pub fn driver_as<T: Source>(&self) -> Option<&T> {
        let any: &dyn Any = self.driver.as_ref();
        any.downcast_ref()
    }
}

/// The keys every service takes, whatever its driver.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedKeys {
    driver: Spanned<String>,
    schedule: Option<Spanned<Vec<String>>>,
    compression_level: Option<Spanned<i64>>,
    block_size: Option<Spanned<String>>,
    retention: Option<Spanned<RawRetention>>,
    #[serde(default)]
    tier_retention: IndexMap<String, Spanned<RawRetention>>,
    copy: Option<Spanned<Vec<String>>>,
}

/// Every `[services.NAME]` table, read from the text again (the first pass only checked the
/// rest of the file), then what each says about the others.
pub(super) fn parse_all(
    file: &ConfigFile<'_>,
    tiers: &[TierConfig],
    defaults: &Defaults,
    state_dir: &Path,
) -> Result<BTreeMap<ServiceName, ServiceConfig>> {
    let mut doc = DeTable::parse(file.text)
        .map_err(|e| file.error(e.to_string()))?
        .into_inner();
    let mut services = BTreeMap::new();
    let Some(tables) = doc.remove("services") else {
        return Ok(services);
    };
    let span = tables.span();
    let DeValue::Table(tables) = tables.into_inner() else {
        return Err(file.at(span, "services must be a table of [services.NAME]".into()));
    };
    for (name, table) in tables {
        let service = parse_one(file, name.get_ref(), table, tiers, defaults, state_dir)?;
        services.insert(service.name.clone(), service);
    }
    for service in services.values() {
        service
            .driver
            .check_services(&services)
            .map_err(|(span, m)| file.at(span, m))?;
    }
    Ok(services)
}

fn parse_one(
    file: &ConfigFile<'_>,
    name: &str,
    table: Spanned<DeValue<'_>>,
    tiers: &[TierConfig],
    defaults: &Defaults,
    state_dir: &Path,
) -> Result<ServiceConfig> {
    let at = |span, message| file.at(span, message);
    let span = table.span();
    let sname =
        ServiceName::new(name).map_err(|e| at(span.clone(), format!("[services.{name}]: {e}")))?;
    let DeValue::Table(table) = table.into_inner() else {
        return Err(at(span, format!("[services.{name}] must be a table")));
    };
    // The shared keys for this module, the rest for the driver.
    let shared_keys = keys_of::<SharedKeys>();
    let (shared, own): (DeTable<'_>, DeTable<'_>) = table
        .into_iter()
        .partition(|(key, _)| shared_keys.contains(&key.get_ref().as_ref()));
    let s: SharedKeys = from_table(Spanned::new(span.clone(), DeValue::Table(shared)))
        .map_err(|(sp, m)| at(sp, format!("[services.{name}] {m}")))?;

    let wanted = s.driver.get_ref();
    let Some(driver) = DRIVERS.iter().find(|d| d.name == wanted) else {
        return Err(at(
            s.driver.span(),
            format!(
                "[services.{name}] driver {wanted:?} is not known (known: {})",
                DRIVERS
                    .iter()
                    .map(|d| d.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    // A key of another driver is a mistake of its own (a copied block, a wrong driver).
    let takes = (driver.keys)();
    if let Some((key, _)) = own
        .iter()
        .find(|(k, _)| !takes.contains(&k.get_ref().as_ref()))
    {
        let key_name = key.get_ref();
        let message = if DRIVERS
            .iter()
            .any(|d| (d.keys)().contains(&key_name.as_ref()))
        {
            format!("key `{key_name}` does not apply to driver {wanted:?}")
        } else {
            format!(
                "unknown key `{key_name}`: driver {wanted:?} takes `{}`, and every service `{}`",
                takes.join("`, `"),
                shared_keys.join("`, `")
            )
        };
        return Err(at(key.span(), format!("[services.{name}] {message}")));
    }
    let context = ServiceContext {
        name: &sname,
        span: span.clone(),
        schedule: s.schedule.as_ref(),
        tiers,
        state_dir,
        file,
    };
    let source = (driver.configure)(Spanned::new(span, DeValue::Table(own)), &context)
        .map_err(|(sp, m)| at(sp, m))?;

    let compression_level = match &s.compression_level {
        Some(l) => check_level(l).map_err(|m| at(l.span(), m))?,
        None => defaults.compression_level,
    };
    let block_size = match &s.block_size {
        Some(b) => check_block_size(b).map_err(|m| at(b.span(), m))?,
        None => defaults.block_size,
    };
    let mut tier_retention = BTreeMap::new();
    for (tier, r) in s.tier_retention {
        let sp = r.span();
        if !tiers.iter().any(|t| t.name.as_str() == tier) {
            return Err(at(
                sp,
                format!("[services.{name}] tier_retention: no tier named {tier:?}"),
            ));
        }
        let r = retention(r.into_inner())
            .map_err(|m| at(sp, format!("[services.{name}] tier_retention.{tier}: {m}")))?;
        tier_retention.insert(tier, r);
    }
    Ok(ServiceConfig {
        name: sname,
        schedule: match s.schedule {
            Some(sch) => {
                for expr in sch.get_ref() {
                    crate::schedule::parse(expr)
                        .map_err(|m| at(sch.span(), format!("[services.{name}] schedule: {m}")))?;
                }
                sch.into_inner()
            }
            None => Vec::new(),
        },
        compression_level,
        block_size,
        retention: match s.retention {
            Some(r) => {
                let sp = r.span();
                Some(
                    retention(r.into_inner())
                        .map_err(|m| at(sp, format!("[services.{name}] retention: {m}")))?,
                )
            }
            None => source.default_retention(),
        },
        tier_retention,
        copy: s
            .copy
            .map(|c| check_copy(c, &format!("[services.{name}]")))
            .transpose()
            .map_err(|(sp, m)| at(sp, m))?,
        driver: source,
    })
}

/// `T` from a table of the parsed file; an error names the place, the key whose value is wrong,
/// and what serde says.
pub fn from_table<T: DeserializeOwned>(
    table: Spanned<DeValue<'_>>,
) -> std::result::Result<T, Mistake> {
    let span = table.span();
    let values: Vec<(String, Range<usize>)> = match table.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect(),
        _ => Vec::new(),
    };
    T::deserialize(table.into_deserializer()).map_err(|e| {
        let at = e.span().unwrap_or(span);
        let key = values.iter().find(|(_, v)| v.contains(&at.start));
        match key {
            Some((key, _)) => (at, format!("{key}: {}", e.message())),
            None => (at, e.message().to_owned()),
        }
    })
}

/// The keys a `#[derive(Deserialize)]` struct takes, as serde lists them (so they are written
/// once, as its fields).
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    struct Fields(&'static [&'static str]);
    #[derive(Debug)]
    struct Listed;
    impl std::fmt::Display for Listed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields listed")
        }
    }
    impl std::error::Error for Listed {}
    impl serde::de::Error for Listed {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Listed
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Listed;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Listed> {
            Err(Listed::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Listed> {
            self.0 = fields;
            Err(Listed)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// What a driver's settings are checked with: the service they belong to, and checks of the
/// values several drivers share. Every mistake names the service.
pub struct ServiceContext<'a> {
    pub name: &'a ServiceName,
    /// The service's table: where a missing key is reported.
    pub span: Range<usize>,
    /// `schedule` as written (a WAL spool is only emptied on one).
    pub schedule: Option<&'a Spanned<Vec<String>>>,
    /// Every tier, in the order written.
    pub tiers: &'a [TierConfig],
    /// Where a source may remember what it must undo after a crash (the lock directory).
    pub state_dir: &'a Path,
    file: &'a ConfigFile<'a>,
}

impl ServiceContext<'_> {
    /// A mistake in this service's table, at `span`.
    pub fn error(&self, span: Range<usize>, message: impl std::fmt::Display) -> Mistake {
        (span, format!("[services.{}] {message}", self.name))
    }

    /// `value`, which the driver cannot do without.
    pub fn needs<T>(&self, driver: &str, value: Option<T>, key: &str) -> Result<T, Mistake> {
        value.ok_or_else(|| {
            self.error(
                self.span.clone(),
                format!("driver {driver:?} needs `{key}`"),
            )
        })
    }

    /// A path, relative to the config file's directory.
    pub fn resolve(&self, path: PathBuf) -> PathBuf {
        self.file.resolve(path)
    }

    /// A secret reference (`env:`, `file:`, `vault:`, or a literal).
    pub fn secret(&self, value: Spanned<String>) -> Result<SecretRef, Mistake> {
        SecretRef::parse(value.get_ref()).map_err(|m| (value.span(), m))
    }

    /// A part of a file name (an artifact stem, an extension).
    pub fn file_part(&self, value: Spanned<String>, what: &str) -> Result<String, Mistake> {
        crate::id::validate_file_part(value.get_ref(), what)
            .map_err(|e| self.error(value.span(), e))?;
        Ok(value.into_inner())
    }

    /// A TCP port, or `default` when absent.
    pub fn port(&self, port: Option<Spanned<i64>>, default: u16) -> Result<u16, Mistake> {
        match port {
            None => Ok(default),
            Some(p) => u16::try_from(*p.get_ref())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    self.error(p.span(), format!("port {} is not a TCP port", p.get_ref()))
                }),
        }
    }

    /// An optional list of names (collections, buckets) that each name a file: absent means
    /// "all", present must hold at least one.
    pub fn names(
        &self,
        list: Option<Spanned<Vec<String>>>,
        key: &str,
        item: &str,
    ) -> Result<Option<Vec<String>>, Mistake> {
        let Some(list) = list else {
            return Ok(None);
        };
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                format!("{key} is empty (leave it out for every {item})"),
            ));
        }
        for n in list.get_ref() {
            crate::id::validate_file_part(n, &format!("{item} name"))
                .map_err(|e| self.error(list.span(), e))?;
        }
        Ok(Some(list.into_inner()))
    }

    /// An endpoint's `ca_file` (read now, so a typo is a config error with its line) and
    /// `allow_insecure_http`.
    pub fn transport(
        &self,
        ca_file: &Option<Spanned<PathBuf>>,
        allow_insecure_http: Option<bool>,
    ) -> Result<Transport, Mistake> {
        transport_of(ca_file, allow_insecure_http, &|p| self.resolve(p))
    }

    /// An http(s) base URL, or `default` when absent; https:// off this machine unless
    /// `transport` allows plain http.
    pub fn url(
        &self,
        url: Option<Spanned<String>>,
        default: &str,
        transport: &Transport,
    ) -> Result<String, Mistake> {
        let Some(u) = url else {
            return Ok(default.to_owned());
        };
        let text = u.get_ref();
        let Some(rest) = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
        else {
            return Err(self.error(
                u.span(),
                format!("url {text:?} is not an http:// or https:// URL"),
            ));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        // Credentials belong in their own secret keys: a URL is printed in errors and logs.
        if authority.contains('@')
            || rest.contains('?')
            || rest.contains('#')
            || authority.is_empty()
        {
            return Err(self.error(
                u.span(),
                "url must be scheme://host[:port][/path], without user, query or fragment (credentials go in their own key)",
            ));
        }
        transport
            .check_url(text, &format!("[services.{}]", self.name), "url")
            .map_err(|m| (u.span(), m))?;
        Ok(u.into_inner())
    }
}
