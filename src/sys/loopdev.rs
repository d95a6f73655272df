//! Read-only loop devices set up atomically with `LOOP_CONFIGURE`.
//!
//! Written over rustix rather than the `loopdev` crates, which still use the
//! racy `LOOP_SET_FD` + `LOOP_SET_STATUS64` pair and need bindgen.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, Ioctl, IoctlOutput, Opcode, Setter};

use super::{SysError, SysResult};

const LOOP_CTL_GET_FREE: Opcode = 0x4C82;
const LOOP_CONFIGURE: Opcode = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// `LOOP_CTL_GET_FREE`: no argument, the device number is the return value.
struct GetFree;

// SAFETY: the ioctl takes no pointer and returns a non-negative int.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        Ok(out as u32)
    }
}

/// An attached loop device. It detaches itself (autoclear) once the last
/// user, this handle or a mount of it, goes away.
#[derive(Debug)]
pub struct LoopDevice {
    /// The open device; keeping it open keeps the device attached until
    /// something else (the mount) holds it.
    pub device: OwnedFd,
    /// `/dev/loopN`.
    pub path: PathBuf,
}

/// Which bytes of the backing file the device shows; a size of 0 means "to
/// the end". Lets one DDI partition be mapped without a partition scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Start in bytes.
    pub offset: u64,
    /// Length in bytes, 0 for all.
    pub size: u64,
}

/// Attach `window` of `backing` (an open image file) read-only to a free
/// loop device.
pub fn attach_read_only(
    backing: BorrowedFd<'_>,
    name: &str,
    window: Window,
) -> SysResult<LoopDevice> {
    let control = rustix::fs::open(
        "/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::new("open", "/dev/loop-control", e))?;
    // Another process may grab the same free number between GET_FREE and
    // CONFIGURE; the kernel then answers EBUSY and we try the next one.
    for _ in 0..64 {
        // SAFETY: GetFree matches LOOP_CTL_GET_FREE's contract.
        let number = unsafe { ioctl(&control, GetFree) }
            .map_err(|e| SysError::new("allocate loop device for", name, e))?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = match rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        {
            Ok(fd) => fd,
            Err(e) => return Err(SysError::new("open", path.display(), e)),
        };
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: window.offset,
                lo_sizelimit: window.size,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
                lo_file_name: file_name_field(name),
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which
        // LoopConfig mirrors field for field.
        match unsafe { ioctl(&device, Setter::<LOOP_CONFIGURE, LoopConfig>::new(config)) } {
            Ok(()) => return Ok(LoopDevice { device, path }),
            Err(Errno::BUSY) => continue,
            Err(e) => return Err(SysError::new("configure", path.display(), e)),
        }
    }
    Err(SysError::new("allocate loop device for", name, Errno::BUSY))
}

fn file_name_field(name: &str) -> [u8; 64] {
    let mut field = [0u8; 64];
    let bytes = name.as_bytes();
    let len = bytes.len().min(63);
    field[..len].copy_from_slice(&bytes[..len]);
    field
}
