//! Stage 2, fetch: first-boot downloads of missing extensions, planned from sysupdate
//! definitions, checked against signed manifests and written atomically over HTTP(S).

pub mod download;
pub mod http;
pub mod manifest;
pub mod oci;
pub mod openpgp;
pub mod pull;
pub mod sysupdate;
