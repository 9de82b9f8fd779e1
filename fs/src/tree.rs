//! The catalog as a directory tree: `/<service>/<tier>/<YYYY-MM-DD>/` holding, per backup copy on
//! that tier, the decompressed file, its `.sha256` line and one `metadata.json` per day.
//!
//! A [`Tree`] is an immutable snapshot built from the catalog's records; a refresh builds a new
//! one and swaps it in, so a lookup never sees half a refresh. Copies marked `missing` are not
//! shown; `corrupt` ones are (their good blocks stay readable, the bad ones fail with EIO).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tierback_engine::catalog::{ArtifactRecord, CopyState};
use tierback_engine::id::{ArtifactId, BackupId, TierName};
use tierback_engine::layout::{date_of, rfc3339};

use crate::inode::{Inodes, ROOT};

/// One copy of one artifact on one tier, as a file of decompressed bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFile {
    pub artifact_id: ArtifactId,
    pub backup_id: BackupId,
    pub tier: TierName,
    /// Object key on the tier.
    pub key: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_sha256: String,
    pub verified_at: Option<i64>,
    /// Pinned by `tierback pin`: kept whatever retention says.
    pub pinned: bool,
    /// `service/tier/date/file`, for log lines.
    pub view_path: String,
}

#[derive(Debug, Clone)]
pub enum Content {
    Dir(BTreeMap<String, u64>),
    /// A backup copy: read through the block cache.
    Copy(Arc<CopyFile>),
    /// Small generated files (`.sha256`, `metadata.json`), held in memory.
    Bytes(Arc<[u8]>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub ino: u64,
    pub parent: u64,
    pub content: Content,
    /// Unix seconds: the backup time for files, the newest backup below for directories.
    pub mtime: i64,
}

impl Node {
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::Dir(_) => 0,
            Content::Copy(c) => c.raw_size,
            Content::Bytes(b) => b.len() as u64,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
}

impl Tree {
    /// Builds the view of `artifacts`, showing copies on `tiers` only (tiers the config names:
    /// a copy on a tier that is no longer configured cannot be read).
    pub fn build(artifacts: &[ArtifactRecord], tiers: &[TierName], inodes: &mut Inodes) -> Tree {
        let mut tree = Tree::default();
        tree.nodes.insert(
            ROOT,
            Node {
                ino: ROOT,
                parent: ROOT,
                content: Content::Dir(BTreeMap::new()),
                mtime: 0,
            },
        );
        // Per day directory: the metadata.json entries, written once all files are in.
        let mut days: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
        for a in artifacts {
            let date = date_of(a.taken_at);
            for copy in &a.copies {
                if copy.state == CopyState::Missing || !tiers.contains(&copy.tier) {
                    continue;
                }
                let dir = tree.mkdirs(
                    inodes,
                    &[a.service.as_str(), copy.tier.as_str(), &date],
                    a.taken_at,
                );
                let view_path = format!("{}/{}/{date}/{}", a.service, copy.tier, a.file);
                let file = Arc::new(CopyFile {
                    artifact_id: a.id,
                    backup_id: a.backup_id,
                    tier: copy.tier.clone(),
                    key: a.key.clone(),
                    raw_size: a.raw_size,
                    raw_sha256: a.raw_sha256.clone(),
                    stored_sha256: a.stored_sha256.clone(),
                    verified_at: copy.verified_at,
                    pinned: a.pinned,
                    view_path: view_path.clone(),
                });
                tree.add(inodes, dir, &view_path, Content::Copy(file), a.taken_at);
                // sha256sum format: two spaces, then the name relative to the directory.
                let line = format!("{}  {}\n", a.raw_sha256, a.file);
                tree.add(
                    inodes,
                    dir,
                    &format!("{view_path}.sha256"),
                    Content::Bytes(line.into_bytes().into()),
                    a.taken_at,
                );
                days.entry(dir).or_default().push(serde_json::json!({
                    "file": a.file,
                    "service": a.service,
                    "tier": copy.tier,
                    "backup_id": a.backup_id,
                    "artifact_id": a.id,
                    "taken_at": rfc3339(a.taken_at),
                    "driver": a.driver,
                    "key": a.key,
                    "size": a.raw_size,
                    "sha256": a.raw_sha256,
                    "stored_size": a.stored_size,
                    "stored_sha256": a.stored_sha256,
                    "block_size": a.block_size,
                    "block_count": a.block_count,
                    "compression_level": a.compression_level,
                    "state": copy.state,
                    "verified_at": copy.verified_at.map(rfc3339),
                    "pinned": a.pinned,
                    "facts": a.facts,
                }));
            }
        }
        for (dir, mut entries) in days {
            entries.sort_by(|a, b| a["file"].as_str().cmp(&b["file"].as_str()));
            let mut text = serde_json::to_vec_pretty(&entries).expect("JSON of plain values");
            text.push(b'\n');
            let mtime = tree.nodes[&dir].mtime;
            let path = format!("{}/metadata.json", tree.path_of(dir));
            tree.add(inodes, dir, &path, Content::Bytes(text.into()), mtime);
        }
        tree
    }

    /// The directories along `parts`, created as needed; returns the last one's inode.
    fn mkdirs(&mut self, inodes: &mut Inodes, parts: &[&str], mtime: i64) -> u64 {
        let mut parent = ROOT;
        self.touch(ROOT, mtime);
        let mut path = String::new();
        for part in parts {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            let ino = inodes.of(&path);
            if !self.nodes.contains_key(&ino) {
                self.add(inodes, parent, &path, Content::Dir(BTreeMap::new()), mtime);
            }
            self.touch(ino, mtime);
            parent = ino;
        }
        parent
    }

    fn touch(&mut self, ino: u64, mtime: i64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mtime = n.mtime.max(mtime);
        }
    }

    fn add(&mut self, inodes: &mut Inodes, parent: u64, path: &str, content: Content, mtime: i64) {
        let ino = inodes.of(path);
        let name = path.rsplit('/').next().expect("non-empty path").to_owned();
        if let Some(Content::Dir(children)) = self.nodes.get_mut(&parent).map(|n| &mut n.content) {
            children.insert(name, ino);
        }
        self.nodes.insert(
            ino,
            Node {
                ino,
                parent,
                content,
                mtime,
            },
        );
    }

    fn path_of(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let node = &self.nodes[&ino];
            let parent = &self.nodes[&node.parent];
            if let Content::Dir(children) = &parent.content
                && let Some((name, _)) = children.iter().find(|(_, i)| **i == ino)
            {
                parts.push(name.clone());
            }
            ino = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Option<&Node> {
        match &self.nodes.get(&parent)?.content {
            Content::Dir(children) => children.get(name).and_then(|i| self.nodes.get(i)),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Sum of all file sizes (for `statfs`).
    pub fn total_bytes(&self) -> u64 {
        self.nodes.values().map(Node::size).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tierback_engine::catalog::CopyRecord;
    use tierback_engine::id::ServiceName;

    fn tiers(names: &[&str]) -> Vec<TierName> {
        names.iter().map(|t| TierName::new(*t).unwrap()).collect()
    }

    pub fn record(
        id: i64,
        service: &str,
        taken_at: i64,
        file: &str,
        tiers: &[&str],
    ) -> ArtifactRecord {
        ArtifactRecord {
            id: ArtifactId::new(id),
            backup_id: BackupId::new(id),
            service: ServiceName::new(service).unwrap(),
            taken_at,
            driver: "command".into(),
            file: file.into(),
            key: format!("{service}/{}/{file}.gz", date_of(taken_at)),
            raw_size: 1000 + id as u64,
            raw_sha256: format!("{id:064x}"),
            stored_size: 10,
            stored_sha256: "ss".into(),
            block_size: 1 << 20,
            compression_level: 6,
            block_count: 1,
            facts: serde_json::json!({}),
            pinned: false,
            copies: tiers
                .iter()
                .map(|t| CopyRecord {
                    tier: TierName::new(*t).unwrap(),
                    state: CopyState::Present,
                    stored_at: taken_at,
                    verified_at: Some(taken_at),
                    error: None,
                })
                .collect(),
        }
    }

    const T: i64 = 1_768_564_800; // 2026-01-16 12:00:00 UTC

    #[test]
    fn layout_sizes_and_sidecars() {
        let mut inodes = Inodes::default();
        let tiers = tiers(&["local", "s3"]);
        let arts = vec![
            record(1, "pg", T, "main_120000.sql", &["local", "s3"]),
            record(2, "pg", T + 3600, "main_130000.sql", &["local"]),
            record(3, "redis", T, "dump_120000.rdb", &["gone"]),
        ];
        let tree = Tree::build(&arts, &tiers, &mut inodes);
        let pg = tree.lookup(ROOT, "pg").unwrap();
        assert!(
            tree.lookup(ROOT, "redis").is_none(),
            "copies on unknown tiers are hidden"
        );
        let day = tree
            .lookup(tree.lookup(pg.ino, "local").unwrap().ino, "2026-01-16")
            .unwrap();
        let Content::Dir(children) = &day.content else {
            panic!()
        };
        assert_eq!(
            children.keys().collect::<Vec<_>>(),
            [
                "main_120000.sql",
                "main_120000.sql.sha256",
                "main_130000.sql",
                "main_130000.sql.sha256",
                "metadata.json"
            ]
        );
        let f = tree.lookup(day.ino, "main_130000.sql").unwrap();
        assert_eq!(f.size(), 1002);
        assert_eq!(f.mtime, T + 3600);
        assert_eq!(
            day.mtime,
            T + 3600,
            "a directory carries its newest backup's time"
        );
        let Content::Bytes(sha) = &tree
            .lookup(day.ino, "main_120000.sql.sha256")
            .unwrap()
            .content
        else {
            panic!()
        };
        assert_eq!(&**sha, format!("{:064x}  main_120000.sql\n", 1).as_bytes());
        let Content::Bytes(meta) = &tree.lookup(day.ino, "metadata.json").unwrap().content else {
            panic!()
        };
        let meta: serde_json::Value = serde_json::from_slice(meta).unwrap();
        assert_eq!(meta.as_array().unwrap().len(), 2);
        assert_eq!(meta[0]["tier"], "local");
    }

    #[test]
    fn inodes_survive_a_refresh_and_missing_copies_vanish() {
        let mut inodes = Inodes::default();
        let tiers = tiers(&["local"]);
        let a = record(1, "pg", T, "main_120000.sql", &["local"]);
        let first = Tree::build(std::slice::from_ref(&a), &tiers, &mut inodes);
        let ino = |t: &Tree| {
            let mut n = ROOT;
            for p in ["pg", "local", "2026-01-16", "main_120000.sql"] {
                n = t.lookup(n, p).unwrap().ino;
            }
            n
        };
        let before = ino(&first);
        let newer = record(2, "pg", T - 86_400, "main_120000.sql", &["local"]);
        let second = Tree::build(&[newer, a.clone()], &tiers, &mut inodes);
        assert_eq!(ino(&second), before);
        let mut gone = a;
        gone.copies[0].state = CopyState::Missing;
        let third = Tree::build(&[gone], &tiers, &mut inodes);
        assert!(third.lookup(ROOT, "pg").is_none());
    }
}
