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
