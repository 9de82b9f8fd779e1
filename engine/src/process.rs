//! What every child process tierback starts shares: it dies with tierback. A `kill -9` of
//! tierback (or a crash) must not leave a dump tool, rclone or a scratch server running.

use std::process::Command;

/// Asks the kernel to SIGTERM the child when the thread that started it ends, so a `kill -9`
/// of tierback does not leave rclone running. Callers make sure that thread outlives the child
/// (short commands are waited for by their caller; the server is started by a dedicated thread).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}
