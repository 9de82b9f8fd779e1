//! Prometheus metrics with the seed's names, derived from the catalog (so any process can write
//! them and they survive restarts): written as a textfile-collector file after each `run`,
//! printed by `tierback metrics`, served by `tierback metrics --serve`.
//!
//! Labels: `service`; `type` is the kind of artifact (`sql`, `rdb`, `tar`, … — the file
//! extension) for backups; `tier`/`location` name a tier; storage free space is per local path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::Result;
use crate::catalog::{ArtifactRecord, Catalog, RunKind, RunStatus, TierUsage};
use crate::config::{Config, TierKind};

pub const LAST_RUN_TIMESTAMP: &str = "backup_last_run_timestamp";
pub const DURATION_SECONDS: &str = "backup_duration_seconds";
pub const SIZE_BYTES: &str = "backup_size_bytes";
pub const SUCCESS: &str = "backup_success";
pub const RUNNING_SINCE: &str = "backup_running_since_timestamp";
pub const AGE_HOURS: &str = "backup_age_hours";
pub const NEWEST_TIMESTAMP: &str = "backup_newest_timestamp_seconds";
pub const FILES_COUNT: &str = "backup_files_count";
pub const STORAGE_USED_BYTES: &str = "backup_storage_used_bytes";
pub const STORAGE_FREE_BYTES: &str = "backup_storage_free_bytes";
pub const VERIFY_SUCCESS: &str = "backup_verify_success";
pub const VERIFY_DURATION_SECONDS: &str = "backup_verify_duration_seconds";
pub const RESTORE_TEST_SUCCESS: &str = "backup_restore_test_success";
pub const CHECKSUM_FAILURES: &str = "backup_checksum_failures";
pub const COMPRESSION_RATIO: &str = "backup_compression_ratio";
pub const NETWORK_THROUGHPUT_BYTES: &str = "backup_network_throughput_bytes";

pub const VERIFY_OLDEST_AGE_SECONDS: &str = "backup_verify_oldest_age_seconds";
pub const VERIFY_WINDOW_SECONDS: &str = "backup_verify_window_seconds";
pub const VERIFY_READ_BYTES: &str = "backup_verify_read_bytes";

/// Samples grouped by metric, in the order metrics are first written: the text format wants
/// all samples of a metric together, under one HELP and TYPE.
#[derive(Default)]
struct Out {
    metrics: Vec<(&'static str, &'static str, &'static str, Vec<String>)>,
}

impl Out {
    fn metric(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{k}=\"{v}\"")
            })
            .collect();
        let value = if value == f64::INFINITY {
            "+Inf".to_string()
        } else {
            format!("{value}")
        };
        let sample = format!("{name}{{{}}} {value}", labels.join(","));
        match self.metrics.iter_mut().find(|m| m.0 == name) {
            Some(m) => m.3.push(sample),
            None => self.metrics.push((name, kind, help, vec![sample])),
        }
    }

    fn text(self) -> String {
        let mut text = String::new();
        for (name, kind, help, samples) in self.metrics {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(text, "{s}");
            }
        }
        text
    }
}

fn kind_of(a: &ArtifactRecord) -> &str {
    a.file.rsplit('.').next().unwrap_or("backup")
}

/// Renders every metric as Prometheus text exposition (format 0.0.4).
pub fn render(config: &Config, catalog: &Catalog, now: i64) -> Result<String> {
    let mut out = Out::default();
    let running = catalog.running_backups()?;
    let usage = catalog.tier_usage()?;
    for name in config.services.keys() {
        let service = name.as_str();
        let newest_artifacts = catalog.newest_backup(name)?;
        let kind = newest_artifacts
            .first()
            .map(kind_of)
            .unwrap_or("backup")
            .to_owned();
        let labels = [("service", service), ("type", kind.as_str())];
        if let Some((run, _)) = catalog.last_finished_run(service, RunKind::Backup)? {
            out.metric(
                LAST_RUN_TIMESTAMP,
                "gauge",
                "Unix time the last backup run started.",
                &labels,
                run.started_at as f64,
            );
            out.metric(
                SUCCESS,
                "gauge",
                "1 if the last backup run succeeded, else 0.",
                &labels,
                f64::from(run.status == RunStatus::Ok),
            );
            if let Some(end) = run.finished_at {
                out.metric(
                    DURATION_SECONDS,
                    "gauge",
                    "Wall time of the last backup run.",
                    &labels,
                    (end - run.started_at) as f64,
                );
            }
        }
        if let Some(started) = running.get(service) {
            out.metric(
                RUNNING_SINCE,
                "gauge",
                "Unix time the backup run in progress started (absent when none runs).",
                &[("service", service)],
                *started as f64,
            );
        }
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut raw, mut stored) = (0u64, 0u64);
        for a in &newest_artifacts {
            *by_kind.entry(kind_of(a)).or_default() += a.stored_size;
            raw += a.raw_size;
            stored += a.stored_size;
        }
        for (k, size) in &by_kind {
            out.metric(
                SIZE_BYTES,
                "gauge",
                "Stored (compressed) size of the newest backup.",
                &[("service", service), ("type", k)],
                *size as f64,
            );
        }
        if stored > 0 {
            out.metric(
                COMPRESSION_RATIO,
                "gauge",
                "Uncompressed / stored size of the newest backup, all its files.",
                &[("service", service)],
                raw as f64 / stored as f64,
            );
        }
        let age = newest_artifacts
            .first()
            .map_or(f64::INFINITY, |a| (now - a.taken_at) as f64 / 3600.0);
        out.metric(
            AGE_HOURS,
            "gauge",
            "Hours since the newest backup (+Inf: none yet).",
            &[("service", service)],
            age,
        );
        if let Some(a) = newest_artifacts.first() {
            out.metric(
                NEWEST_TIMESTAMP,
                "gauge",
                "Unix time the newest backup was taken.",
                &[("service", service)],
                a.taken_at as f64,
            );
        }
        if let Some((run, _)) = catalog.last_finished_run(service, RunKind::RestoreTest)? {
            out.metric(
                RESTORE_TEST_SUCCESS,
                "gauge",
                "1 if the last restore test passed.",
                &[("service", service)],
                f64::from(run.status == RunStatus::Ok),
            );
        }
        if let Some((run, _)) = catalog.last_finished_run(service, RunKind::Verify)?
            && let Some(end) = run.finished_at
        {
            out.metric(
                VERIFY_DURATION_SECONDS,
                "gauge",
                "Wall time of the last verification.",
                &[("service", service)],
                (end - run.started_at) as f64,
            );
        }
    }

    // Per service, over the copies that exist: how many failed their latest check.
    let mut failures_by_service: BTreeMap<&str, u64> = BTreeMap::new();
    for u in &usage {
        *failures_by_service.entry(u.service.as_str()).or_default() += u.corrupt;
    }
    let mut total_failures = 0;
    for (service, failures) in failures_by_service {
        let ok = failures == 0;
        out.metric(
            VERIFY_SUCCESS,
            "gauge",
            "1 if every copy's latest verification passed.",
            &[("service", service)],
            f64::from(ok),
        );
        out.metric(
            CHECKSUM_FAILURES,
            "gauge",
            "Stored copies whose latest verification failed.",
            &[("service", service)],
            failures as f64,
        );
        total_failures += failures;
    }
    out.metric(
        CHECKSUM_FAILURES,
        "gauge",
        "Stored copies whose latest verification failed.",
        &[("service", "all")],
        total_failures as f64,
    );

    for tier in &config.tiers {
        let t = tier.name.as_str();
        let mine: Vec<&TierUsage> = usage.iter().filter(|u| u.tier == t).collect();
        out.metric(
            STORAGE_USED_BYTES,
            "gauge",
            "Bytes of backups stored on the tier.",
            &[("tier", t)],
            mine.iter().map(|u| u.bytes).sum::<u64>() as f64,
        );
        for u in mine.iter().filter(|u| u.files > 0) {
            out.metric(
                FILES_COUNT,
                "gauge",
                "Backup files on the tier.",
                &[("location", t), ("service", u.service.as_str())],
                u.files as f64,
            );
        }
        out.metric(
            FILES_COUNT,
            "gauge",
            "Backup files on the tier.",
            &[("location", t), ("service", "all")],
            mine.iter().map(|u| u.files).sum::<u64>() as f64,
        );
        if let TierKind::Local { path, .. } = &tier.kind
            && let Some(free) = crate::fsutil::free_bytes(path)
        {
            out.metric(
                STORAGE_FREE_BYTES,
                "gauge",
                "Free bytes on the local tier's filesystem.",
                &[("location", &path.display().to_string())],
                free as f64,
            );
        }
        if let Some((run, Some(bytes))) = catalog.last_finished_run(t, RunKind::Sync)?
            && let Some(end) = run.finished_at
        {
            let secs = (end - run.started_at).max(1) as f64;
            out.metric(
                NETWORK_THROUGHPUT_BYTES,
                "gauge",
                "Bytes per second uploaded by the last sync.",
                &[("direction", "upload"), ("destination", t)],
                bytes as f64 / secs,
            );
        }
        // The copy checked longest ago (one never checked counts from when it was stored).
        let oldest = mine.iter().filter_map(|u| u.oldest_check).min();
        if let Some(oldest) = oldest {
            out.metric(
                VERIFY_OLDEST_AGE_SECONDS,
                "gauge",
                "Seconds since the copy on the tier that was verified longest ago was last verified.",
                &[("tier", t)],
                (now - oldest).max(0) as f64,
            );
        }
        out.metric(
            VERIFY_WINDOW_SECONDS,
            "gauge",
            "The tier's verify_window: every copy is read within it.",
            &[("tier", t)],
            tier.verify_window as f64,
        );
        if let Some((_, Some(bytes))) = catalog.last_finished_run(t, RunKind::VerifyTier)? {
            out.metric(
                VERIFY_READ_BYTES,
                "gauge",
                "Stored bytes read by the tier's last verification.",
                &[("tier", t)],
                bytes as f64,
            );
        }
    }
    Ok(out.text())
}

/// Writes the textfile atomically (temporary name, fsync, rename) so node_exporter never reads
/// half a file; world-readable, because node_exporter runs as its own user (the metrics hold
/// names, sizes and times, no backup data and no secret).
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    crate::fsutil::write_atomic_mode(path, text.as_bytes(), Some(0o644))
}
