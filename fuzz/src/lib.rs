//! Helpers shared by the fuzz targets.

/// Split fuzz input into `N` parts at `\0\0\0\0` separators (the last part
/// takes the rest), so one input can be several files.
pub fn split<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut parts = [&data[..0]; N];
    let mut rest = data;
    for (i, part) in parts.iter_mut().enumerate() {
        if i + 1 == N {
            *part = rest;
            break;
        }
        match rest.windows(4).position(|w| w == b"\0\0\0\0") {
            Some(at) => {
                *part = &rest[..at];
                rest = &rest[at + 4..];
            }
            None => {
                *part = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    parts
}

/// An in-memory image for parsers that read at offsets.
pub struct Mem<'a>(pub &'a [u8]);

impl std::os::unix::fs::FileExt for Mem<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
}
