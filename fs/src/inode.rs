//! Inode numbers that stay the same across refreshes: a view path gets a number the first time
//! it is seen and keeps it for the life of the mount, so `find`, `tar` and `rsync` never see a
//! file change identity because a backup was added elsewhere. Numbers are never reused (a pruned
//! path keeps its number; a later path never inherits it).

use std::collections::HashMap;

pub const ROOT: u64 = 1;

#[derive(Debug)]
pub struct Inodes {
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        Inodes {
            by_path: HashMap::new(),
            next: ROOT + 1,
        }
    }
}

impl Inodes {
    /// The inode of `path` (relative, `/`-separated; `""` is the root).
    pub fn of(&mut self, path: &str) -> u64 {
        if path.is_empty() {
            return ROOT;
        }
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(path.to_owned(), ino);
        ino
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_never_reused() {
        let mut i = Inodes::default();
        assert_eq!(i.of(""), ROOT);
        let a = i.of("svc");
        let b = i.of("svc/local");
        assert_ne!(a, b);
        assert_eq!(i.of("svc"), a);
        assert!(a > ROOT && b > ROOT);
        let c = i.of("other");
        assert!(c > b);
    }
}
