//! Filesystem helpers that resolve paths the way an image or a target root
//! sees them: symlinks, absolute or relative, never leave the root.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Open `rel` below the directory `root` as if `root` were `/`
/// (`RESOLVE_IN_ROOT`): `..` and absolute symlinks stay inside it.
pub fn open_in_root(root: impl AsFd, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    loop {
        match openat2(
            root.as_fd(),
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // openat2 asks for a retry when a rename raced the lookup.
            Err(Errno::AGAIN) => continue,
            other => return other,
        }
    }
}

/// Open a directory to serve as a root for [`open_in_root`].
pub fn open_dir(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The absolute path the kernel has for an open fd.
pub fn fd_path(fd: impl AsFd) -> rustix::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    std::fs::read_link(link).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// The file type of an open fd.
pub fn file_type(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

/// Whether the directory behind `dir` has any entry (hidden ones count).
pub fn dir_has_entries(dir: impl AsFd) -> rustix::io::Result<bool> {
    Ok(!sorted_entries(dir)?.is_empty())
}

/// The names in a directory, sorted bytewise so every run sees one order.
pub fn sorted_entries(dir: impl AsFd) -> rustix::io::Result<Vec<PathBuf>> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(PathBuf::from(OsStr::from_bytes(&name)));
        }
    }
    names.sort();
    Ok(names)
}

/// Rename `from` to `to` in one step, failing if `to` exists (boot-counting renames must not
/// overwrite an entry of another version).
pub fn rename_noreplace(from: &Path, to: &Path) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
}

/// What identifies an image file (or directory) without a root hash, as
/// systemd-sysext records it in the `origin` of a merge: the unique id of
/// the mount it is on, its file handle (else its inode), its birth time
/// and its modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// Unique mount id (Linux 6.8+), else the old reusable one.
    pub mount_id: u64,
    /// `name_to_handle_at` handle type and bytes, when the file system
    /// gives one.
    pub handle: Option<(i32, Vec<u8>)>,
    /// The inode number.
    pub inode: u64,
    /// Birth time in µs, 0 when unknown.
    pub btime_usec: u64,
    /// Modification time in µs.
    pub mtime_usec: u64,
}

const AT_HANDLE_FID: i32 = 0x200;
const AT_HANDLE_MNT_ID_UNIQUE: i32 = 0x001;
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// Identify `path` (symlinks followed) the way systemd's image discovery
/// does: a file handle tried as an FID first, the unique mount id from the
/// handle call, else statx, else the old mount id.
pub fn file_identity(path: &Path) -> rustix::io::Result<FileIdentity> {
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let mut handle = None;
    let mut mount_id = None;
    'flags: for fid in [AT_HANDLE_FID, 0] {
        for unique in [AT_HANDLE_MNT_ID_UNIQUE, 0] {
            match name_to_handle(&fd, fid | unique) {
                Ok((h, id)) => {
                    handle = Some(h);
                    if unique != 0 {
                        mount_id = Some(id);
                    }
                    break 'flags;
                }
                Err(Errno::INVAL) => continue,
                Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::PERM) => break 'flags,
                Err(e) => return Err(e),
            }
        }
    }
    let flags = rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::STATX_DONT_SYNC;
    let stx = rustix::fs::statx(
        &fd,
        "",
        flags,
        rustix::fs::StatxFlags::BASIC_STATS
            | rustix::fs::StatxFlags::BTIME
            | rustix::fs::StatxFlags::MNT_ID
            | rustix::fs::StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )?;
    let usec =
        |t: rustix::fs::StatxTimestamp| t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000;
    let btime_usec =
        if stx.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0 && stx.stx_btime.tv_sec != 0 {
            usec(stx.stx_btime)
        } else {
            0
        };
    Ok(FileIdentity {
        mount_id: mount_id.unwrap_or(stx.stx_mnt_id),
        handle,
        inode: stx.stx_ino,
        btime_usec,
        mtime_usec: usec(stx.stx_mtime),
    })
}

/// `name_to_handle_at(fd, "", …, AT_EMPTY_PATH | flags)`, growing the
/// buffer as the kernel asks.
fn name_to_handle(fd: &OwnedFd, flags: i32) -> rustix::io::Result<((i32, Vec<u8>), u64)> {
    use std::os::fd::AsRawFd;
    let mut size = 128usize;
    loop {
        // struct file_handle: u32 handle_bytes, i32 handle_type, bytes.
        let mut buf = vec![0u8; 8 + size];
        buf[..4].copy_from_slice(&(size as u32).to_ne_bytes());
        let mut mount_id = 0u64;
        // SAFETY: buf is large enough for the header and `size` bytes; the
        // kernel writes an int, or a u64 with AT_HANDLE_MNT_ID_UNIQUE, to
        // mount_id, which has room for both.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr(),
                &mut mount_id as *mut u64,
                libc::AT_EMPTY_PATH | flags,
            )
        };
        let used = u32::from_ne_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
        if rc == 0 {
            let kind = i32::from_ne_bytes(buf[4..8].try_into().unwrap_or_default());
            let id = if flags & AT_HANDLE_MNT_ID_UNIQUE != 0 {
                mount_id
            } else {
                u64::from(mount_id as u32)
            };
            return Ok(((kind, buf[8..8 + used.min(size)].to_vec()), id));
        }
        let errno =
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        if errno == Errno::OVERFLOW && used > size {
            size = used;
            continue;
        }
        return Err(errno);
    }
}

/// Whether `path` is the root of a mount (statx `STATX_ATTR_MOUNT_ROOT`).
pub fn is_mount_point(path: &Path) -> rustix::io::Result<bool> {
    let stx = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::BASIC_STATS,
    )?;
    let root = rustix::fs::StatxAttributes::MOUNT_ROOT;
    Ok(stx.stx_attributes_mask.contains(root) && stx.stx_attributes.contains(root))
}
