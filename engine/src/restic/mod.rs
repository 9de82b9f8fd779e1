//! The `restic` tier: a restic repository written and read through `rustic_core`, so its copies
//! are deduplicated (content-defined chunks), compressed and encrypted (AES-256 with a
//! Poly1305 MAC) at rest, and the `restic` CLI reads them with the password alone.
//!
//! It stores the **decompressed** stream of each artifact (compressed bytes do not deduplicate),
//! one snapshot per backup, laid out as the mount shows it:
//!
//! ```text
//! /<service>/<YYYY-MM-DD>/<file>                      the decompressed artifact
//! /<service>/<YYYY-MM-DD>/<file>.sha256               sha256sum line of it
//! /<service>/<YYYY-MM-DD>/.tierback/<file>.gz.idx      the artifact's block index
//! /<service>/<YYYY-MM-DD>/.tierback/<file>.gz.meta.json  and its metadata
//! ```
//!
//! tagged `tierback`, `service=<service>`, `backup=<backup id>`, dated at the backup's time. The
//! hidden sidecars let `catalog rebuild --from` this tier recreate the catalog from the
//! snapshots alone, and let reads check every block against the same raw SHA-256 that every
//! other tier's reads check.
//!
//! The repository lives on one of tierback's own stores ([`backend::StoreBackend`]).

pub mod backend;
mod read;
pub mod rebuild;
mod snapshot;
pub(crate) mod sync;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, NoProgressBars, OpenStatus, Repository,
    RepositoryBackends, RepositoryOptions, RusticError,
};

pub use read::ResticStore;
pub use snapshot::{BackupSnapshot, SnapshotArtifact, raw_path};

use crate::config::{TierConfig, TierKind};
use crate::secret::SecretRef;
use crate::store::Store;
use crate::store::local::LocalStore;
use crate::{Error, Result};
use backend::StoreBackend;

pub type OpenRepo = Repository<OpenStatus>;

/// A configured `restic` tier: where its repository is and how to unlock it.
pub struct ResticTier {
    name: String,
    path: PathBuf,
    /// Opened on first use: opening creates the directory, which only `setup` should do.
    backend: OnceLock<Arc<StoreBackend>>,
    password: SecretRef,
}

impl ResticTier {
    pub fn open(tier: &TierConfig) -> Result<ResticTier> {
        let TierKind::Restic { path, password } = &tier.kind else {
            return Err(Error::Invalid(format!(
                "tier {} is not a restic tier",
                tier.name
            )));
        };
        Ok(ResticTier {
            name: tier.name.to_string(),
            path: path.clone(),
            backend: OnceLock::new(),
            password: password.clone(),
        })
    }

    fn backend(&self) -> Result<Arc<StoreBackend>> {
        if let Some(b) = self.backend.get() {
            return Ok(Arc::clone(b));
        }
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(&self.name, &self.path)?);
        Ok(Arc::clone(
            self.backend
                .get_or_init(|| Arc::new(StoreBackend::new(store, ""))),
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error of this tier's repository, one line, naming the tier and where it is.
    pub(crate) fn error(&self, doing: &str, e: &RusticError) -> Error {
        let detail = e.display_log();
        let detail = detail.strip_prefix("Error: ").unwrap_or(&detail);
        Error::Invalid(format!(
            "restic tier {} ({}): {doing}: {detail}",
            self.name,
            self.path.display()
        ))
    }

    fn repository(&self) -> Result<Repository<()>> {
        let backends = RepositoryBackends::new(self.backend()?, None);
        // No local cache: cron runs as a service user whose home may not be writable, and a
        // cache would be one more copy of the index to trust.
        let options = RepositoryOptions::default().no_cache(true);
        Repository::new_with_progress(&options, &backends, NoProgressBars {})
            .map_err(|e| self.error("opening the repository", &e))
    }

    fn credentials(&self) -> Result<Credentials> {
        Ok(Credentials::Password(
            self.password.resolve()?.expose().to_owned(),
        ))
    }

    /// Whether a repository exists (a `config` file).
    pub fn exists(&self) -> Result<bool> {
        if !self.path.is_dir() {
            return Ok(false);
        }
        Ok(self
            .repository()?
            .config_id()
            .map_err(|e| self.error("looking for the repository", &e))?
            .is_some())
    }

    /// Initialises the repository unless one is there (made by us or by `restic init`);
    /// returns whether it made one.
    pub fn setup(&self) -> Result<bool> {
        if self.exists()? {
            self.open_repo()?; // the password must open what is there
            return Ok(false);
        }
        self.repository()?
            .init(
                &self.credentials()?,
                &KeyOptions::default(),
                &chunker_for_dumps(),
            )
            .map_err(|e| self.error("initialising the repository", &e))?;
        tracing::info!(tier = %self.name, path = %self.path.display(), "initialised a restic repository");
        Ok(true)
    }

    /// Opens the existing repository: a missing one and a wrong password are errors that say so.
    pub fn open_repo(&self) -> Result<OpenRepo> {
        if !self.exists()? {
            return Err(Error::Invalid(format!(
                "restic tier {}: no restic repository at {} (`tierback tiers setup` or `restic init` makes one)",
                self.name,
                self.path.display()
            )));
        }
        self.repository()?
            .open(&self.credentials()?)
            .map_err(|e| {
                if e.is_incorrect_password() {
                    Error::Invalid(format!(
                        "restic tier {}: the password does not open the repository at {} (check the tier's `password` reference)",
                        self.name,
                        self.path.display()
                    ))
                } else {
                    self.error("opening the repository", &e)
                }
            })
    }
}

#[cfg(test)]
mod tests;

/// The chunker of a repository tierback makes: content-defined (restic's Rabin chunker, the
/// repository's own polynomial) at a quarter of restic's default sizes (256 KiB average, 128 KiB
/// to 2 MiB). A database dump changes in short runs of rows, and each changed run costs a new
/// chunk around it: smaller chunks keep less unchanged data with it. restic reads such a
/// repository as any other (the sizes are settings of the writer, kept in the config file,
/// which restic ignores); a repository made by `restic init` keeps restic's sizes.
fn chunker_for_dumps() -> ConfigOptions {
    ConfigOptions::default()
        .set_chunk_size(bytesize::ByteSize::kib(256))
        .set_chunk_min_size(bytesize::ByteSize::kib(128))
        .set_chunk_max_size(bytesize::ByteSize::mib(2))
}
