//! Turning a discovered candidate into a tree that can be read and stacked:
//! directories are used in place; file system images and GPT disk images
//! (DDIs) are judged (`verity`), attached read-only to loop devices (under
//! dm-verity when protected) and mounted in the workspace.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::mount::MountAttrFlags;

use crate::find::discover::{Candidate, SourceKind};
use crate::sys::mount::{attach, io_error, mount_block_read_only};
use crate::sys::SysError;
use crate::verify::policy::{Designator, ImagePolicy, Protection};
use crate::verify::probe::{check_complete, probe, Format, ProbeError};
use crate::verify::signature::TrustedCert;
use crate::verify::verity::{self, Verdict, VerityError};

/// Why an image cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the image failed.
    #[error("cannot read image: {0}")]
    Read(#[from] std::io::Error),
    /// Not a file system or disk image rdext knows.
    #[error("{0}")]
    Probe(#[from] ProbeError),
    /// Its protection is missing, broken or not enough for the policy.
    #[error("{0}")]
    Verity(#[from] VerityError),
    /// The kernel refused to attach or mount it.
    #[error("{0}")]
    Mount(#[from] SysError),
    /// The mount is not on the device that was checked.
    #[error("mounted file system is not on {0}")]
    WrongDevice(String),
}

/// What `open` needs to judge an image.
#[derive(Debug)]
pub struct Trust<'a> {
    /// The image policy for this image.
    pub policy: &'a ImagePolicy,
    /// Certificates from the verity.d directories.
    pub trusted: &'a [TrustedCert],
    /// Unix time certificates must be valid at.
    pub now: u64,
}

/// Called with the kernel modules a step is about to need (`loop`,
/// `dm-mod`/`dm-verity`, the file system's), before it takes it.
pub type NeedModules<'a> = &'a (dyn Fn(&[&str]) + Sync);

/// An image ready to read and stack.
#[derive(Debug)]
pub struct Opened {
    /// Its root directory.
    pub root: PathBuf,
    /// How it is protected.
    pub verdict: Verdict,
    /// The verity root hash, whenever one is known (sidecar, signature
    /// partition or partition UUIDs), even if the policy did not use it:
    /// it identifies the image in the merge's `origin`.
    pub root_hash: Option<Vec<u8>>,
}

/// Make the candidate's tree available and return its root. File system
/// images are judged against the policy, set up (dm-verity when they carry
/// a hash tree the policy wants) and mounted read-only (`attrs`) at
/// `mount_point`, an empty directory in the workspace.
pub fn open(
    candidate: &Candidate,
    mount_point: &Path,
    attrs: MountAttrFlags,
    trust: &Trust<'_>,
    need_modules: NeedModules<'_>,
) -> Result<Opened, ImageError> {
    if candidate.kind == SourceKind::Directory {
        // A directory cannot carry verity: it is judged as unprotected.
        trust
            .policy
            .check(Designator::Root, Some(Protection::Unprotected))
            .map_err(VerityError::from)?;
        return Ok(Opened {
            root: candidate.path.clone(),
            verdict: Verdict::Unprotected,
            root_hash: None,
        });
    }
    // One open file serves probing, inspection and the loop devices, so
    // what was checked is what gets mounted.
    let file = File::open(&candidate.path)?;
    let naked = probe(&file)?;
    let inspection = verity::inspect(&file, &candidate.path, naked)?;
    let verdict = verity::judge(&inspection, trust.policy, trust.trusted, trust.now)?;
    let active = verity::activate(&file, &candidate.path, &inspection, &verdict, need_modules)?;
    // Whatever happens, the verity device must go once nothing uses it.
    let mount = check_and_mount(&active.device, naked, attrs, need_modules);
    if let Some(name) = &active.dm_name {
        verity::release_when_unmounted(name);
    }
    let mount = mount?;
    // The loop devices are held by the mount from here on (autoclear).
    drop(active.loops);
    let stat =
        rustix::fs::fstat(&mount).map_err(|e| SysError::new("stat", mount_point.display(), e))?;
    if stat.st_dev != active.dev {
        return Err(ImageError::WrongDevice(active.device.display().to_string()));
    }
    std::fs::create_dir_all(mount_point).map_err(|e| io_error("create", mount_point, &e))?;
    attach(&mount, mount_point)?;
    Ok(Opened {
        root: mount_point.to_path_buf(),
        verdict,
        root_hash: inspection.root_hash.clone(),
    })
}

/// Refuse a device whose file system is cut short, then mount it.
fn check_and_mount(
    device: &Path,
    naked: Option<Format>,
    attrs: MountAttrFlags,
    need_modules: NeedModules<'_>,
) -> Result<std::os::fd::OwnedFd, ImageError> {
    let file = File::open(device)?;
    let format = match naked {
        Some(format) => format,
        None => probe(&file)?.ok_or(ProbeError::Unrecognized)?,
    };
    check_complete(&file, format)?;
    drop(file);
    need_modules(&[format.fstype()]);
    Ok(mount_block_read_only(format.fstype(), device, attrs)?)
}
