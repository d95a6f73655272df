//! The real root's `/etc/fstab`, read for one question: is `/var` a file
//! system of its own that the initrd does not mount? Then the images in
//! `/var/lib/extensions` and `/var/lib/confexts` live there, and the merge
//! has to mount it for a moment (see `mount::var`).

use std::path::PathBuf;

/// One fstab line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The first field as written: `/dev/vdb`, `LABEL=var`, `UUID=…`.
    pub source: String,
    /// The mount point, unescaped.
    pub target: String,
    /// The file system type; `auto` when the field is missing.
    pub fstype: String,
    /// The options, split at commas.
    pub options: Vec<String>,
    /// The fsck pass number (0: never checked).
    pub passno: u32,
}

/// Parse fstab text: `#` comments and blank lines are skipped, fields are
/// unescaped (`\040` is a space), missing trailing fields take their
/// defaults. Lines with fewer than two fields are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = line.split_whitespace().map(unescape).collect();
        if fields.len() < 2 {
            continue;
        }
        let field = |i: usize, default: &str| fields.get(i).cloned().unwrap_or(default.into());
        entries.push(Entry {
            source: fields[0].clone(),
            target: fields[1].clone(),
            fstype: field(2, "auto"),
            options: field(3, "defaults")
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
            passno: fields.get(5).and_then(|p| p.parse().ok()).unwrap_or(0),
        });
    }
    entries
}

/// Octal escapes as getmntent(3) writes them.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entry mounting `/var`, if any (the first one, as mount(8) would
/// mount it first).
pub fn var_entry(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().find(|e| {
        let target = e.target.trim_end_matches('/');
        target == "/var"
    })
}

impl Entry {
    /// Whether the option `name` is set.
    pub fn has_option(&self, name: &str) -> bool {
        self.options.iter().any(|o| o == name)
    }

    /// The device node the source names, as udev links it: `LABEL=x` is
    /// `/dev/disk/by-label/x`. None for sources that are not block devices
    /// (network shares, tmpfs).
    pub fn device_path(&self) -> Option<PathBuf> {
        if self.source.starts_with('/') {
            return Some(PathBuf::from(&self.source));
        }
        let (tag, value) = self.source.split_once('=')?;
        let dir = match tag {
            "LABEL" => "by-label",
            "UUID" => "by-uuid",
            "PARTLABEL" => "by-partlabel",
            "PARTUUID" => "by-partuuid",
            "ID" => "by-id",
            _ => return None,
        };
        let value = unquote(value);
        if value.is_empty() {
            return None;
        }
        Some(PathBuf::from(format!(
            "/dev/disk/{dir}/{}",
            udev_encode(value)
        )))
    }

    /// The options split as mount(2) wants them: the generic flags, and
    /// the file system's own options as one comma-separated string.
    /// Options only userspace reads (`nofail`, `x-…`, `defaults`) are
    /// dropped.
    pub fn mount_options(&self) -> (Vec<GenericFlag>, String) {
        let mut flags: Vec<GenericFlag> = Vec::new();
        let mut data = Vec::new();
        for option in &self.options {
            let set = |flags: &mut Vec<GenericFlag>, flag| {
                if !flags.contains(&flag) {
                    flags.push(flag);
                }
            };
            match option.as_str() {
                "ro" => set(&mut flags, GenericFlag::ReadOnly),
                "rw" => flags.retain(|f| *f != GenericFlag::ReadOnly),
                "nosuid" => set(&mut flags, GenericFlag::NoSuid),
                "suid" => flags.retain(|f| *f != GenericFlag::NoSuid),
                "nodev" => set(&mut flags, GenericFlag::NoDev),
                "dev" => flags.retain(|f| *f != GenericFlag::NoDev),
                "noexec" => set(&mut flags, GenericFlag::NoExec),
                "exec" => flags.retain(|f| *f != GenericFlag::NoExec),
                "noatime" => set(&mut flags, GenericFlag::NoAtime),
                "nodiratime" => set(&mut flags, GenericFlag::NoDirAtime),
                "relatime" => set(&mut flags, GenericFlag::RelAtime),
                "strictatime" => set(&mut flags, GenericFlag::StrictAtime),
                "lazytime" => set(&mut flags, GenericFlag::LazyTime),
                "sync" => set(&mut flags, GenericFlag::Sync),
                "dirsync" => set(&mut flags, GenericFlag::DirSync),
                "nosymfollow" => set(&mut flags, GenericFlag::NoSymFollow),
                "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "owner"
                | "group" | "nofail" | "_netdev" | "async" | "atime" | "diratime"
                | "norelatime" | "nostrictatime" | "nolazytime" => {}
                o if o.starts_with("x-") || o.starts_with("X-") || o.starts_with("comment=") => {}
                o => data.push(o),
            }
        }
        (flags, data.join(","))
    }
}

/// The mount options that are mount(2) flags rather than file system data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenericFlag {
    /// `ro`
    ReadOnly,
    /// `nosuid`
    NoSuid,
    /// `nodev`
    NoDev,
    /// `noexec`
    NoExec,
    /// `noatime`
    NoAtime,
    /// `nodiratime`
    NoDirAtime,
    /// `relatime`
    RelAtime,
    /// `strictatime`
    StrictAtime,
    /// `lazytime`
    LazyTime,
    /// `sync`
    Sync,
    /// `dirsync`
    DirSync,
    /// `nosymfollow`
    NoSymFollow,
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// udev's encoding of a tag value in a `/dev/disk/by-*` link name: bytes
/// other than ASCII letters, digits, `#+-.:=@_` and multi-byte UTF-8 become
/// `\xNN`.
fn udev_encode(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || !c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_defaults_comments_and_escapes() {
        let text = "# comment\n\n/dev/vda / ext4 rw,relatime 0 1\n\
                    LABEL=my\\040var /var/ ext4 defaults,nofail,x-systemd.device-timeout=5 0 2\n\
                    tmpfs /tmp\nbroken\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].passno, 1);
        assert_eq!(entries[1].source, "LABEL=my var");
        assert_eq!(entries[1].target, "/var/");
        assert_eq!(entries[2].fstype, "auto");
        assert_eq!(entries[2].options, ["defaults"]);
        assert_eq!(entries[2].passno, 0);
        let var = var_entry(&entries).unwrap();
        assert_eq!(var.passno, 2);
        assert!(var.has_option("nofail"));
        assert!(var_entry(&parse("/dev/vdb /var/lib ext4 defaults 0 2\n")).is_none());
    }

    #[test]
    fn device_paths_as_udev_links_them() {
        let entry = |source: &str| Entry {
            source: source.into(),
            target: "/var".into(),
            fstype: "ext4".into(),
            options: vec![],
            passno: 0,
        };
        let path = |source: &str| entry(source).device_path().map(|p| p.display().to_string());
        assert_eq!(path("/dev/vdb").as_deref(), Some("/dev/vdb"));
        assert_eq!(path("LABEL=var").as_deref(), Some("/dev/disk/by-label/var"));
        assert_eq!(
            path("LABEL=\"my var/x\"").as_deref(),
            Some("/dev/disk/by-label/my\\x20var\\x2fx")
        );
        assert_eq!(
            path("UUID=0a1b-2c").as_deref(),
            Some("/dev/disk/by-uuid/0a1b-2c")
        );
        assert_eq!(
            path("PARTLABEL=var").as_deref(),
            Some("/dev/disk/by-partlabel/var")
        );
        assert_eq!(path("server:/export"), None);
        assert_eq!(path("tmpfs"), None);
        assert_eq!(path("LABEL="), None);
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let entry = Entry {
            source: "/dev/vdb".into(),
            target: "/var".into(),
            fstype: "ext4".into(),
            options: "defaults,ro,rw,nosuid,noatime,errors=remount-ro,nofail,x-systemd.automount,comment=x,data=journal"
                .split(',')
                .map(str::to_string)
                .collect(),
            passno: 2,
        };
        let (flags, data) = entry.mount_options();
        assert_eq!(flags, [GenericFlag::NoSuid, GenericFlag::NoAtime]);
        assert_eq!(data, "errors=remount-ro,data=journal");
    }
}
