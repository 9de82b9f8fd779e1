//! The adapter between the kernel and [`Filesystem`]: the only file that names fuser. Each
//! method converts arguments, calls the typed core and turns its result into a reply; errors
//! become errnos through [`FsError::errno`] alone.
//!
//! The mount has no `default_permissions`: the kernel lets every request through (to the users
//! `allow_other` admits) and the core decides, with the caller this adapter passes on
//! ([`caller`]), so that refused attempts reach the audit log.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags,
    Generation, INodeNo, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use tracing::warn;

use crate::audit::Caller;
use crate::error::FsError;
use crate::filesystem::{Attr, Filesystem, Kind};

/// How long the kernel may trust a lookup or attribute. Short, because a refresh can add or
/// remove entries; files themselves never change, so their data is cached far longer (keep_cache).
const TTL: Duration = Duration::from_secs(1);

/// The kernel's read-ahead per request: 1 MiB is one block, and what FACTS.md measured best.
const MAX_READAHEAD: u32 = 1 << 20;

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// Who sent a request, as the kernel says: fs uid and gid, and the calling thread.
fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn to_file_attr(a: &Attr) -> FileAttr {
    let t = if a.mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(a.mtime as u64)
    } else {
        UNIX_EPOCH
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        flags: 0,
        // The I/O size cat, cp and stdio take for their buffer. A 1 MiB first read makes the
        // kernel's first read-ahead window a whole 1 MiB, so with the default 1 MiB blocks each
        // later FUSE request is one block (a 256 KiB read opened with 512 KiB, and every request
        // then spanned two blocks and was copied). Interleaved A/B, 1 GiB, six rounds: warm
        // re-read 90 ms against 106 with 256 KiB (plain page cache 85), cold user CPU -8 %.
        blksize: 1 << 20,
    }
}

struct Adapter {
    fs: Arc<Filesystem>,
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        // A name the kernel caches is walked without asking: only when no walk can be refused.
        let ttl = if self.fs.names_cacheable() {
            TTL
        } else {
            Duration::ZERO
        };
        match self.fs.lookup(caller(req), parent.0, name) {
            Ok(a) => reply.entry(&ttl, &to_file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &to_file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
        match self.fs.open(caller(req), ino.0, write) {
            // Backups never change: the page cache stays valid across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Whatever a read logs (a corrupt block, a tier error) names the request it served.
        let _span =
            tracing::debug_span!("read", req = req.unique().0, ino = ino.0, offset, size).entered();
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(data.as_slice()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(caller(req), ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.fs.readdir(ino.0) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                    let kind = match e.kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                    };
                    // The offset given is where the next readdir resumes.
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, kind, &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, 0, 0, s.files, 0, s.block_size, 255, s.block_size);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match name.to_str() {
            Some(n) => self.fs.getxattr(caller(req), ino.0, n),
            None => Err(FsError::NoXattr),
        };
        xattr_reply(value, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(self.fs.listxattr(ino.0), size, reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // access(2), faccessat(2) and chdir(2): the kernel asks only without default_permissions.
        match self.fs.access(caller(req), ino.0, mask.bits() as u32) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    // ---- every change is refused: the mount is read-only for everyone ----------------------

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(errno(&FsError::ReadOnly));
    }
}

fn xattr_reply(value: Result<Vec<u8>, FsError>, size: u32, reply: ReplyXattr) {
    match value {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(errno(&FsError::Range)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountSpec {
    pub mountpoint: PathBuf,
    /// Kernel request threads (each with its own /dev/fuse fd).
    pub threads: usize,
    /// Let users other than the mounting one in (the kernel's `allow_other`); without it the
    /// kernel admits the mounting user alone, whatever the modes say.
    pub allow_other: bool,
}

/// A mounted, serving filesystem.
pub struct Mounted {
    session: fuser::BackgroundSession,
}

impl Mounted {
    /// True once the kernel ended the session (`fusermount3 -u`, `umount`).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmounts (fails with EBUSY while the mount is in use) and waits for the serving threads.
    pub fn unmount(self) -> io::Result<()> {
        self.session.umount_and_join()
    }

    /// Waits for the serving threads after the mount is gone.
    pub fn join(self) -> io::Result<()> {
        self.session.join()
    }
}

/// Mounts `fs` read-only at `spec.mountpoint` and serves it on background threads.
/// No `AutoUnmount`: it goes through the `fusermount3` binary and hangs the unmount (FACTS.md);
/// the caller unmounts on signals instead. No `default_permissions`: [`Filesystem`] checks
/// access itself, so that it can audit refusals the kernel would otherwise keep to itself.
pub fn mount(fs: Arc<Filesystem>, spec: &MountSpec) -> io::Result<Mounted> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("tierback".into()),
        MountOption::Subtype("tierback".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    if spec.allow_other {
        // fuser turns this into the kernel's `allow_other` option.
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(spec.threads.max(1));
    // Each thread reads its own /dev/fuse fd: no contention on one queue (FACTS.md).
    config.clone_fd = spec.threads > 1;
    let session = fuser::Session::new(Adapter { fs }, &spec.mountpoint, &config)?;
    match session.spawn() {
        Ok(session) => Ok(Mounted { session }),
        Err(e) => {
            warn!("could not start serving threads: {e}");
            Err(e)
        }
    }
}
