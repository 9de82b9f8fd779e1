//! One lock per service (an `flock` on `<catalog dir>/locks/<service>.lock`), so two cron runs
//! never back up the same service at once. The kernel drops the lock when the process dies.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Result};

pub struct ServiceLock {
    _file: File,
}

impl ServiceLock {
    /// Takes the lock without waiting; [`Error::Locked`] if another process holds it.
    pub fn acquire(lock_dir: &Path, service: &str) -> Result<ServiceLock> {
        std::fs::create_dir_all(lock_dir).ctx(|| format!("creating {}", lock_dir.display()))?;
        let path: PathBuf = lock_dir.join(format!("{service}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked {
                    service: service.to_owned(),
                    path,
                });
            }
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
        Ok(ServiceLock { _file: file })
    }
}

/// True if a process with this pid exists (it may belong to another user).
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServiceLock::acquire(dir.path(), "pg").unwrap();
        assert!(matches!(
            ServiceLock::acquire(dir.path(), "pg"),
            Err(Error::Locked { .. })
        ));
        assert!(ServiceLock::acquire(dir.path(), "redis").is_ok());
        drop(a);
        assert!(ServiceLock::acquire(dir.path(), "pg").is_ok());
    }
}
