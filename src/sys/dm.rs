//! Device-mapper through its ioctl interface: just what dm-verity needs
//! (create, load a table, resume, query, remove).
//!
//! Written over rustix rather than the `devicemapper` crate, which needs
//! libclang, libdevmapper and bindgen to build statically. Without udev
//! cookies `/dev/mapper/NAME` may not exist yet when a call returns, so
//! callers use the device number (`/dev/block/MAJ:MIN` or a node made
//! from it), never a name lookup.

use std::ffi::c_void;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, Ioctl, IoctlOutput, Opcode};

use super::{SysError, SysResult};

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;

const DM_READONLY_FLAG: u32 = 1 << 0;
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;
const DM_DEFERRED_REMOVE: u32 = 1 << 17;

/// Commands (`DM_*_CMD`).
#[derive(Clone, Copy)]
enum Command {
    Version = 0,
    DevCreate = 3,
    DevRemove = 4,
    DevSuspend = 6,
    DevStatus = 7,
    TableLoad = 9,
    TableStatus = 12,
}

/// `struct dm_ioctl` from `<linux/dm-ioctl.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`, followed in the buffer by its parameters.
#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; DM_MAX_TYPE_NAME],
}

const HEADER: usize = std::mem::size_of::<DmIoctl>();
const SPEC: usize = std::mem::size_of::<DmTargetSpec>();

/// One ioctl call: the header plus a data area, in one 8-byte aligned
/// buffer as the kernel expects.
struct Call {
    command: Command,
    buf: Vec<u64>,
}

impl Call {
    fn new(command: Command, name: &str, flags: u32, data_len: usize) -> Result<Self, Errno> {
        if name.len() >= DM_NAME_LEN {
            return Err(Errno::NAMETOOLONG);
        }
        let size = (HEADER + data_len).next_multiple_of(8).max(16 * 1024);
        let mut header = DmIoctl {
            version: [4, 0, 0],
            data_size: size as u32,
            data_start: HEADER as u32,
            target_count: 0,
            open_count: 0,
            flags,
            event_nr: 0,
            padding: 0,
            dev: 0,
            name: [0; DM_NAME_LEN],
            uuid: [0; DM_UUID_LEN],
            data: [0; 7],
        };
        header.name[..name.len()].copy_from_slice(name.as_bytes());
        let mut call = Call {
            command,
            buf: vec![0u64; size / 8],
        };
        call.set_header(&header);
        Ok(call)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: a u64 buffer viewed as bytes; length in bytes is exact.
        unsafe {
            std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), self.buf.len() * 8)
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.buf.len() * 8) }
    }

    fn header(&self) -> DmIoctl {
        // SAFETY: the buffer starts with a DmIoctl and is 8-byte aligned.
        unsafe { std::ptr::read(self.buf.as_ptr().cast::<DmIoctl>()) }
    }

    fn set_header(&mut self, header: &DmIoctl) {
        // SAFETY: as above.
        unsafe { std::ptr::write(self.buf.as_mut_ptr().cast::<DmIoctl>(), *header) }
    }

    fn set_uuid(&mut self, uuid: &str) -> Result<(), Errno> {
        if uuid.len() >= DM_UUID_LEN {
            return Err(Errno::NAMETOOLONG);
        }
        let mut header = self.header();
        header.uuid[..uuid.len()].copy_from_slice(uuid.as_bytes());
        self.set_header(&header);
        Ok(())
    }

    /// Put one target (whole device, `sectors` long) into the data area.
    fn set_target(&mut self, target_type: &str, sectors: u64, params: &str) {
        let spec_len = (SPEC + params.len() + 1).next_multiple_of(8);
        let bytes = self.bytes_mut();
        let spec = &mut bytes[HEADER..HEADER + spec_len];
        spec[0..8].copy_from_slice(&0u64.to_ne_bytes());
        spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
        spec[16..20].copy_from_slice(&0i32.to_ne_bytes());
        spec[20..24].copy_from_slice(&(spec_len as u32).to_ne_bytes());
        spec[24..24 + target_type.len()].copy_from_slice(target_type.as_bytes());
        spec[SPEC..SPEC + params.len()].copy_from_slice(params.as_bytes());
        let mut header = self.header();
        header.target_count = 1;
        self.set_header(&header);
    }

    fn run(mut self, control: &OwnedFd) -> Result<Call, Errno> {
        // SAFETY: the buffer holds a valid dm_ioctl of data_size bytes.
        unsafe { ioctl(control, &mut self)? };
        Ok(self)
    }
}

// SAFETY: every DM ioctl takes a pointer to a dm_ioctl buffer of
// `data_size` bytes, which Call owns, and may write into all of it.
unsafe impl Ioctl for &mut Call {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        // _IOWR(0xfd, cmd, struct dm_ioctl)
        (3 << 30) | ((HEADER as Opcode) << 16) | (0xfd << 8) | self.command as Opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

/// An open `/dev/mapper/control`.
#[derive(Debug)]
pub struct Control {
    fd: OwnedFd,
}

/// The one target of a live table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmTable {
    /// e.g. "verity".
    pub target_type: String,
    /// Its length.
    pub sectors: u64,
    /// Its parameters as the kernel prints them.
    pub params: String,
}

/// A live device-mapper device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmDevice {
    /// Device number.
    pub dev: u64,
}

impl DmDevice {
    /// `/dev/block/MAJ:MIN`-style name, as the kernel knows it.
    pub fn node_name(&self) -> String {
        format!(
            "{}:{}",
            rustix::fs::major(self.dev),
            rustix::fs::minor(self.dev)
        )
    }
}

impl Control {
    /// Open the control device and check the interface version (4.x).
    pub fn open() -> SysResult<Self> {
        let fd = rustix::fs::open(
            "/dev/mapper/control",
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SysError::new("open", "/dev/mapper/control", e))?;
        let control = Control { fd };
        let call = Call::new(Command::Version, "", 0, 0)
            .and_then(|c| c.run(&control.fd))
            .map_err(|e| SysError::new("query", "device-mapper version", e))?;
        if call.header().version[0] != 4 {
            return Err(SysError::new(
                "use",
                "device-mapper interface",
                Errno::PROTONOSUPPORT,
            ));
        }
        Ok(control)
    }

    /// Create `name` as a read-only device with one target and activate it.
    /// `params` may hold secrets (a signature key description), so the
    /// kernel is asked to wipe its copy.
    pub fn create_read_only(
        &self,
        name: &str,
        uuid: &str,
        target_type: &str,
        sectors: u64,
        params: &str,
    ) -> SysResult<DmDevice> {
        let err = |op, e| SysError::new(op, format!("dm device {name}"), e);
        let mut create = Call::new(Command::DevCreate, name, DM_READONLY_FLAG, 0)
            .map_err(|e| err("create", e))?;
        create.set_uuid(uuid).map_err(|e| err("create", e))?;
        let created = create.run(&self.fd).map_err(|e| err("create", e))?;
        let result = (|| {
            let mut load = Call::new(
                Command::TableLoad,
                name,
                DM_READONLY_FLAG | DM_SECURE_DATA_FLAG,
                SPEC + params.len() + 1,
            )?;
            load.set_target(target_type, sectors, params);
            load.run(&self.fd)?;
            // DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the table goes live.
            Call::new(Command::DevSuspend, name, 0, 0)?.run(&self.fd)
        })();
        match result {
            Ok(resumed) => Ok(DmDevice {
                dev: resumed.header().dev.max(created.header().dev),
            }),
            Err(e) => {
                let _ = self.remove(name, false);
                Err(err("load table of", e))
            }
        }
    }

    /// The device and its active table, if `name` exists; a table of more
    /// than one target is reported with an empty target type.
    pub fn table(&self, name: &str) -> SysResult<Option<(DmDevice, DmTable)>> {
        let call = match Call::new(Command::TableStatus, name, DM_STATUS_TABLE_FLAG, 4096)
            .and_then(|c| c.run(&self.fd))
        {
            Ok(call) => call,
            Err(Errno::NXIO) => return Ok(None),
            Err(e) => return Err(SysError::new("query", format!("dm device {name}"), e)),
        };
        let header = call.header();
        let device = DmDevice { dev: header.dev };
        if header.target_count != 1 {
            return Ok(Some((device, DmTable::default())));
        }
        let bytes = call.bytes();
        let spec = &bytes[header.data_start as usize..];
        let mut length = [0u8; 8];
        length.copy_from_slice(&spec[8..16]);
        let table = DmTable {
            target_type: cstr(&spec[24..24 + DM_MAX_TYPE_NAME]),
            sectors: u64::from_ne_bytes(length),
            params: cstr(&spec[SPEC..]),
        };
        Ok(Some((device, table)))
    }

    /// Remove `name`; `deferred` lets the kernel do it once the last user
    /// (a mount) closes it.
    pub fn remove(&self, name: &str, deferred: bool) -> SysResult<()> {
        let flags = if deferred { DM_DEFERRED_REMOVE } else { 0 };
        Call::new(Command::DevRemove, name, flags, 0)
            .and_then(|c| c.run(&self.fd))
            .map(drop)
            .map_err(|e| SysError::new("remove", format!("dm device {name}"), e))
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> SysResult<bool> {
        match Call::new(Command::DevStatus, name, 0, 0).and_then(|c| c.run(&self.fd)) {
            Ok(_) => Ok(true),
            Err(Errno::NXIO) => Ok(false),
            Err(e) => Err(SysError::new("query", format!("dm device {name}"), e)),
        }
    }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layout_matches_the_kernel() {
        assert_eq!(HEADER, 312);
        assert_eq!(SPEC, 40);
        let call = Call::new(Command::TableLoad, "x", 0, 0).unwrap();
        let mut call = call;
        assert_eq!(Ioctl::opcode(&&mut call), 0xc138_fd09);
    }

    #[test]
    fn target_is_packed_after_the_header() {
        let mut call = Call::new(Command::TableLoad, "verity-x", DM_READONLY_FLAG, 100).unwrap();
        call.set_target("verity", 2048, "1 7:0 7:1 4096 4096 256 1 sha256 ab cd");
        let header = call.header();
        assert_eq!(header.target_count, 1);
        assert_eq!(cstr(&header.name), "verity-x");
        let bytes = call.bytes();
        let spec = &bytes[HEADER..];
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 2048);
        assert_eq!(u32::from_ne_bytes(spec[20..24].try_into().unwrap()) % 8, 0);
        assert_eq!(cstr(&spec[24..40]), "verity");
        assert_eq!(cstr(&spec[40..]), "1 7:0 7:1 4096 4096 256 1 sha256 ab cd");
    }

    #[test]
    fn names_too_long_are_refused() {
        assert!(Call::new(Command::DevCreate, &"n".repeat(128), 0, 0).is_err());
    }
}
