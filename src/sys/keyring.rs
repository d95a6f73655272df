//! The one kernel keyring call rdext needs: handing a root-hash signature
//! to dm-verity (`root_hash_sig_key_desc`), which looks it up as a "user"
//! key by description. rustix has no keyctl/add_key, hence libc.

use std::ffi::CString;

use rustix::io::Errno;

use super::{SysError, SysResult};

const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;

/// Add `payload` as a "user" key named `description` to this process's
/// keyring, where dm-verity's table load (run by this process) finds it.
pub fn add_user_key(description: &str, payload: &[u8]) -> SysResult<()> {
    let err = |e| SysError::new("add key", description, e);
    let kind = CString::new("user").map_err(|_| err(Errno::INVAL))?;
    let desc = CString::new(description).map_err(|_| err(Errno::INVAL))?;
    // SAFETY: add_key(2) reads two NUL-terminated strings and `payload`
    // for its length; all outlive the call.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            kind.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_PROCESS_KEYRING,
        )
    };
    if serial < 0 {
        return Err(err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )));
    }
    Ok(())
}
