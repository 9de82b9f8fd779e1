//! The mount's life: checks before mounting (stale mount, already mounted, a mount point inside
//! a local tier), foreground or `--daemon`, the kernel read-ahead of the mount, a catalog poll
//! that refreshes the tree, and a clean unmount on SIGINT/SIGTERM.
//!
//! If this process dies, the kernel keeps the mount point dead (ENOTCONN) until someone unmounts
//! it: never an empty directory that `rsync --delete` could mirror. That is why there is no
//! `AutoUnmount`.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::filesystem::Filesystem;
use crate::fuse::{MountSpec, Mounted};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "{0}: stale mount point: a tierback (or other FUSE) process that served it has died. \
         Clear it with `umount -l {0}` (or `fusermount3 -uz {0}`) and mount again"
    )]
    Stale(PathBuf),
    #[error("{0}: already mounted (unmount it first: `umount {0}` or `fusermount3 -u {0}`)")]
    AlreadyMounted(PathBuf),
    #[error(
        "{mountpoint}: refusing to mount inside the local tier directory {tier}: reads through the \
         mount would go back into the mount and deadlock the kernel; choose a mount point outside it"
    )]
    InsideTier { mountpoint: PathBuf, tier: PathBuf },
    #[error("{0}: mount point must be an existing directory")]
    NotADirectory(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MountError {
    let context = context.into();
    move |source| MountError::Io { context, source }
}

/// Checks a mount point before mounting; returns its canonical path. `tier_dirs` are the local
/// tiers' directories (a mount inside one would read from itself).
pub fn check_mountpoint(path: &Path, tier_dirs: &[PathBuf]) -> Result<PathBuf, MountError> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::Stale(path.to_owned()));
        }
        Err(e) => return Err(io_err(format!("mount point {}", path.display()))(e)),
        Ok(m) if !m.is_dir() => return Err(MountError::NotADirectory(path.to_owned())),
        Ok(_) => {}
    }
    let canonical = path
        .canonicalize()
        .map_err(io_err(format!("mount point {}", path.display())))?;
    if mount_of(&canonical).is_some() {
        return Err(MountError::AlreadyMounted(canonical));
    }
    for tier in tier_dirs {
        let tier = tier.canonicalize().unwrap_or_else(|_| tier.clone());
        if canonical.starts_with(&tier) {
            return Err(MountError::InsideTier {
                mountpoint: canonical,
                tier,
            });
        }
    }
    Ok(canonical)
}

/// The `major:minor` of a FUSE mount at exactly `path`, from /proc/self/mountinfo (read without
/// touching the mount itself, which could block on a request we are not serving yet).
fn mount_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    info.lines().rev().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        let fstype = f.get(sep + 1)?;
        (unescape(f.get(4)?) == want && fstype.starts_with("fuse")).then(|| f[2].to_owned())
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Raises the kernel read-ahead of the mount's backing device: 128 KiB by default, and about
/// 40 % faster at 1 MiB (FACTS.md; more hurts).
fn raise_read_ahead(mountpoint: &Path, kb: u32) {
    let Some(dev) = mount_of(mountpoint) else {
        warn!(
            "{}: not found in mountinfo; kernel read-ahead left as is",
            mountpoint.display()
        );
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&path, kb.to_string()) {
        Ok(()) => info!("{path} = {kb}"),
        Err(e) => warn!("could not set {path} to {kb} (reads will be slower): {e}"),
    }
}

pub struct ServeOptions {
    pub spec: MountSpec,
    pub daemon: bool,
    pub read_ahead_kb: u32,
    /// With `daemon`: the file that receives the daemon's log (its stderr), appended to.
    pub log_file: Option<PathBuf>,
    /// How often the catalog is polled for changes (a new backup shows within this, plus the
    /// kernel's one-second entry cache).
    pub poll: Duration,
}

/// Mounts and serves until SIGINT/SIGTERM/SIGHUP or an external unmount. `build` makes the
/// filesystem; it runs after the daemon fork (a forked process must not inherit threads or
/// open SQLite connections). With `daemon`, the calling process returns once the mount is up
/// (or fails with the child's error) and the child serves.
pub fn serve(
    opts: ServeOptions,
    build: impl FnOnce() -> Result<Filesystem, String>,
) -> Result<(), MountError> {
    if !opts.daemon {
        block_signals();
        return run(&opts, build, None);
    }
    // Opened before the fork, so that a bad path is the caller's error, not a silent daemon.
    let log = match &opts.log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(path)
                .map_err(|e| MountError::Setup(format!("log file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut fds = [0i32; 2];
    // SAFETY: plain syscalls on fresh descriptors, before any thread exists.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io_err("pipe")(std::io::Error::last_os_error()));
    }
    match unsafe { libc::fork() } {
        -1 => Err(io_err("fork")(std::io::Error::last_os_error())),
        0 => {
            // SAFETY: the child owns these descriptors now.
            unsafe {
                libc::close(fds[0]);
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                // Detach from the caller's terminal or pipes entirely (a caller reading our
                // stderr to EOF would otherwise wait for the daemon's whole life). Setup errors
                // still reach the caller through the readiness pipe; the log goes to the file.
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    let err = log.as_ref().map_or(null, |f| f.as_raw_fd());
                    libc::dup2(err, 2);
                }
            }
            block_signals();
            let ready = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
            let result = run(&opts, build, Some(ready));
            if let Err(e) = &result {
                error!("{e}");
            }
            std::process::exit(if result.is_ok() { 0 } else { 1 });
        }
        child => {
            unsafe { libc::close(fds[1]) };
            let mut msg = String::new();
            let mut pipe =
                unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
            let _ = pipe.read_to_string(&mut msg);
            if msg.starts_with("ok") {
                eprintln!(
                    "tierback: mounted at {} (daemon pid {child})",
                    opts.spec.mountpoint.display()
                );
                Ok(())
            } else if msg.is_empty() {
                Err(MountError::Setup(
                    "the mount daemon died before mounting".into(),
                ))
            } else {
                Err(MountError::Setup(msg))
            }
        }
    }
}

/// Blocks the stop signals in this thread and every thread started after it: `run` receives
/// them synchronously with `sigtimedwait`, so no handler can run in the middle of a request.
fn block_signals() {
    // SAFETY: building and installing a signal mask for the current thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits up to `timeout` for a stop signal; returns it.
fn wait_signal(timeout: Duration) -> Option<i32> {
    // SAFETY: as above; sigtimedwait only reads the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        let sig = libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
        (sig > 0).then_some(sig)
    }
}

fn run(
    opts: &ServeOptions,
    build: impl FnOnce() -> Result<Filesystem, String>,
    mut ready: Option<std::fs::File>,
) -> Result<(), MountError> {
    let fail = |ready: &mut Option<std::fs::File>, e: MountError| {
        if let Some(r) = ready.as_mut() {
            let _ = r.write_all(e.to_string().as_bytes());
        }
        e
    };
    let fs = match build() {
        Ok(fs) => Arc::new(fs),
        Err(e) => return Err(fail(&mut ready, MountError::Setup(e))),
    };
    let mountpoint = opts.spec.mountpoint.clone();
    let mounted: Mounted = match crate::fuse::mount(fs.clone(), &opts.spec) {
        Ok(m) => m,
        Err(e) => {
            return Err(fail(
                &mut ready,
                io_err(format!("mounting {}", mountpoint.display()))(e),
            ));
        }
    };
    raise_read_ahead(&mountpoint, opts.read_ahead_kb);
    spawn_poller(fs.clone(), opts.poll);
    info!("serving {} (read-only)", mountpoint.display());
    if let Some(mut r) = ready.take() {
        let _ = r.write_all(b"ok");
    }
    loop {
        if let Some(sig) = wait_signal(Duration::from_millis(500)) {
            info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = mounted.unmount() {
                // Busy (a shell inside, an open file): detach so this process can exit; the
                // kernel finishes the unmount when the last user leaves.
                warn!("{}: {e}; detaching lazily", mountpoint.display());
                detach(&mountpoint);
            }
            return Ok(());
        }
        if mounted.is_finished() {
            info!("{} was unmounted", mountpoint.display());
            break;
        }
    }
    mounted
        .join()
        .map_err(io_err(format!("serving {}", mountpoint.display())))
}

fn detach(mountpoint: &Path) {
    let Ok(c) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        error!(
            "{}: lazy unmount failed: {}",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Polls the catalog so new backups appear (and pruned ones vanish) without a remount.
fn spawn_poller(fs: Arc<Filesystem>, every: Duration) {
    let _ = std::thread::Builder::new()
        .name("catalog-poll".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                if let Err(e) = fs.refresh_if_changed() {
                    warn!("catalog refresh failed (the view keeps its last state): {e}");
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_mount_point_inside_a_tier() {
        let dir = tempfile::tempdir().unwrap();
        let tier = dir.path().join("tier");
        let inside = tier.join("sub");
        std::fs::create_dir_all(&inside).unwrap();
        let e = check_mountpoint(&inside, std::slice::from_ref(&tier)).unwrap_err();
        assert!(matches!(e, MountError::InsideTier { .. }), "{e}");
        let outside = dir.path().join("mnt");
        std::fs::create_dir(&outside).unwrap();
        assert!(check_mountpoint(&outside, &[tier]).is_ok());
    }

    #[test]
    fn missing_or_file_mount_points_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_mountpoint(&dir.path().join("nope"), &[]).is_err());
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&f, &[]),
            Err(MountError::NotADirectory(_))
        ));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
    }
}
