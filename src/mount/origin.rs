//! The `origin` file of a merge (systemd ≥ 260): what the merge was built
//! from, so that a refresh can tell whether anything changed. systemd's
//! `refresh` compares it as JSON (key order does not matter) with the one
//! it would write, and skips when they are equal; an rdext merge made in
//! the initrd with `--root /sysroot` therefore records paths without the
//! root prefix, as the booted system sees them.

use std::path::Path;

use serde_json::{json, Map, Value};

/// How one extension is identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The verity root hash (any image that has one).
    VerityHash(Vec<u8>),
    /// No root hash: where the file is and when it was made and changed.
    File {
        /// Unique id of the mount holding the image.
        mount_id: u64,
        /// File handle type and bytes, if the file system has handles.
        handle: Option<(i32, Vec<u8>)>,
        /// Inode, used only without a handle.
        inode: u64,
        /// Birth time, µs.
        crtime_usec: u64,
        /// Modification time, µs (systemd records 0 for directories and
        /// block devices).
        mtime_usec: u64,
    },
}

/// One merged extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOrigin {
    /// Its name.
    pub name: String,
    /// The resolved image path, without the root prefix.
    pub path: String,
    /// What identifies its content.
    pub identity: Identity,
}

/// Everything a merge was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeOrigin {
    /// The mutable mode's name (`no`, `yes`, …).
    pub mode: &'static str,
    /// Hierarchy (e.g. `/usr`) → its mutable directory, without the root
    /// prefix.
    pub mutable_dirs: Vec<(String, String)>,
    /// The merged extensions.
    pub extensions: Vec<ExtensionOrigin>,
}

/// `path` as seen from inside `root` (both resolved): `/sysroot/var/x` →
/// `/var/x`; a path outside the root stays as it is.
pub fn without_root(path: &Path, root: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if root != Path::new("/") && !rel.as_os_str().is_empty() => {
            format!("/{}", rel.display())
        }
        _ => path.display().to_string(),
    }
}

impl MergeOrigin {
    /// The JSON object systemd writes.
    pub fn to_json(&self) -> Value {
        let mut mutable = Map::new();
        mutable.insert("mode".into(), json!(self.mode));
        if !self.mutable_dirs.is_empty() {
            let dirs: Map<String, Value> = self
                .mutable_dirs
                .iter()
                .map(|(h, d)| (h.clone(), json!(d)))
                .collect();
            mutable.insert("mutableDirs".into(), Value::Object(dirs));
        }
        let mut top = Map::new();
        top.insert("mutable".into(), Value::Object(mutable));
        if !self.extensions.is_empty() {
            let mut extensions = Map::new();
            for ext in &self.extensions {
                let mut entry = Map::new();
                entry.insert("path".into(), json!(ext.path));
                match &ext.identity {
                    Identity::VerityHash(hash) => {
                        entry.insert("verityHash".into(), json!(crate::hex(hash)));
                    }
                    Identity::File {
                        mount_id,
                        handle,
                        inode,
                        crtime_usec,
                        mtime_usec,
                    } => {
                        entry.insert("onMountId".into(), json!(mount_id));
                        match handle {
                            Some((kind, bytes)) => {
                                entry.insert(
                                    "fileHandle".into(),
                                    json!({"type": kind, "handle": crate::hex(bytes)}),
                                );
                            }
                            None => {
                                entry.insert("inode".into(), json!(inode));
                            }
                        }
                        entry.insert("crtime".into(), json!(crtime_usec));
                        entry.insert("mtime".into(), json!(mtime_usec));
                    }
                }
                extensions.insert(ext.name.clone(), Value::Object(entry));
            }
            top.insert("extensions".into(), Value::Object(extensions));
        }
        Value::Object(top)
    }

    /// The file content: pretty JSON and a newline.
    pub fn file_content(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Whether an existing `origin` file describes this same merge
    /// (semantic JSON equality, as systemd compares).
    pub fn same_as(&self, existing: &str) -> bool {
        serde_json::from_str::<Value>(existing).is_ok_and(|old| old == self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MergeOrigin {
        MergeOrigin {
            mode: "no",
            mutable_dirs: Vec::new(),
            extensions: vec![
                ExtensionOrigin {
                    name: "v".into(),
                    path: "/var/lib/extensions/v.raw".into(),
                    identity: Identity::VerityHash(vec![0xab, 0xcd]),
                },
                ExtensionOrigin {
                    name: "d".into(),
                    path: "/var/lib/extensions/d".into(),
                    identity: Identity::File {
                        mount_id: 2147519467,
                        handle: Some((248, vec![0, 1, 0xfe])),
                        inode: 12,
                        crtime_usec: 5,
                        mtime_usec: 0,
                    },
                },
                ExtensionOrigin {
                    name: "q".into(),
                    path: "/var/lib/extensions/q.raw".into(),
                    identity: Identity::File {
                        mount_id: 7,
                        handle: None,
                        inode: 42,
                        crtime_usec: 1,
                        mtime_usec: 2,
                    },
                },
            ],
        }
    }

    #[test]
    fn systemd_format_and_semantic_comparison() {
        let json = sample().to_json();
        assert_eq!(
            json,
            serde_json::json!({
                "mutable": {"mode": "no"},
                "extensions": {
                    "v": {"path": "/var/lib/extensions/v.raw", "verityHash": "abcd"},
                    "d": {"path": "/var/lib/extensions/d", "onMountId": 2147519467u64,
                          "fileHandle": {"type": 248, "handle": "0001fe"}, "crtime": 5, "mtime": 0},
                    "q": {"path": "/var/lib/extensions/q.raw", "onMountId": 7, "inode": 42,
                          "crtime": 1, "mtime": 2}
                }
            })
        );
        // Written by systemd: its own spacing and key order.
        let systemd = "{\n\t\"extensions\" : {\n\t\t\"q\" : {\"mtime\" : 2, \"crtime\" : 1, \"inode\" : 42, \
                       \"onMountId\" : 7, \"path\" : \"/var/lib/extensions/q.raw\"},\n\
                       \"d\" : {\"path\" : \"/var/lib/extensions/d\", \"onMountId\" : 2147519467, \
                       \"fileHandle\" : {\"handle\" : \"0001fe\", \"type\" : 248}, \"crtime\" : 5, \"mtime\" : 0},\n\
                       \"v\" : {\"verityHash\" : \"abcd\", \"path\" : \"/var/lib/extensions/v.raw\"}},\n\
                       \t\"mutable\" : {\"mode\" : \"no\"}\n}\n";
        assert!(sample().same_as(systemd));
        assert!(sample().same_as(&sample().file_content()));
        let mut changed = sample();
        changed.mode = "yes";
        assert!(!changed.same_as(&sample().file_content()));
        let mut changed = sample();
        changed.extensions.pop();
        assert!(!changed.same_as(&sample().file_content()));
        assert!(!sample().same_as("not json"));
    }

    #[test]
    fn mutable_dirs_and_no_extensions() {
        let origin = MergeOrigin {
            mode: "yes",
            mutable_dirs: vec![
                ("/usr".into(), "/var/lib/extensions.mutable/usr".into()),
                ("/opt".into(), "/var/lib/extensions.mutable/opt".into()),
            ],
            extensions: Vec::new(),
        };
        assert_eq!(
            origin.to_json(),
            serde_json::json!({"mutable": {"mode": "yes", "mutableDirs": {
                "/usr": "/var/lib/extensions.mutable/usr",
                "/opt": "/var/lib/extensions.mutable/opt"}}})
        );
    }

    #[test]
    fn root_prefix_is_removed() {
        let root = Path::new("/sysroot");
        assert_eq!(
            without_root(Path::new("/sysroot/var/lib/extensions/a.raw"), root),
            "/var/lib/extensions/a.raw"
        );
        assert_eq!(
            without_root(Path::new("/run/extensions/b.raw"), root),
            "/run/extensions/b.raw"
        );
        assert_eq!(
            without_root(Path::new("/var/lib/extensions/a.raw"), Path::new("/")),
            "/var/lib/extensions/a.raw"
        );
    }
}
