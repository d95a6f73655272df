//! The two kinds of extension and everything that differs between them.

use rustix::mount::MountAttrFlags;

/// sysext extends `/usr` and `/opt`, confext extends `/etc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// System extension.
    Sysext,
    /// Configuration extension.
    Confext,
}

impl Class {
    /// Both classes, in the order they are merged.
    pub const ALL: [Class; 2] = [Class::Sysext, Class::Confext];

    /// "sysext" / "confext": the CLI name, the overlay's mount source and
    /// the suffix in `NAME.sysext.raw`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Sysext => "sysext",
            Class::Confext => "confext",
        }
    }

    /// systemd's search directories, relative to the target root, highest
    /// precedence first.
    pub fn search_dirs(self) -> &'static [&'static str] {
        match self {
            Class::Sysext => &["etc/extensions", "run/extensions", "var/lib/extensions"],
            Class::Confext => &[
                "run/confexts",
                "var/lib/confexts",
                "usr/local/lib/confexts",
                "usr/lib/confexts",
            ],
        }
    }

    /// Directories of the initrd itself that may hold extensions for the
    /// real root (put there by systemd-stub or an earlier initrd step).
    pub fn initrd_dirs(self) -> &'static [&'static str] {
        match self {
            Class::Sysext => &["run/extensions", ".extra/sysext", ".extra/global_sysext"],
            Class::Confext => &["run/confexts", ".extra/confext", ".extra/global_confext"],
        }
    }

    /// The hierarchies overlaid, relative to the root.
    pub fn hierarchies(self) -> &'static [&'static str] {
        match self {
            Class::Sysext => &["usr", "opt"],
            Class::Confext => &["etc"],
        }
    }

    /// The metadata directory inside each merged hierarchy.
    pub fn meta_dir(self) -> &'static str {
        match self {
            Class::Sysext => ".systemd-sysext",
            Class::Confext => ".systemd-confext",
        }
    }

    /// The file in the metadata directory listing the merged names.
    pub fn list_file(self) -> &'static str {
        match self {
            Class::Sysext => "extensions",
            Class::Confext => "confexts",
        }
    }

    /// Where the image keeps its extension-release files.
    pub fn release_dir(self) -> &'static str {
        match self {
            Class::Sysext => "usr/lib/extension-release.d",
            Class::Confext => "etc/extension-release.d",
        }
    }

    /// An os-release at this path would replace the host's identity.
    pub fn forbidden_os_release(self) -> &'static str {
        match self {
            Class::Sysext => "usr/lib/os-release",
            Class::Confext => "etc/os-release",
        }
    }

    /// `SYSEXT_SCOPE` / `CONFEXT_SCOPE`.
    pub fn scope_key(self) -> &'static str {
        match self {
            Class::Sysext => "SYSEXT_SCOPE",
            Class::Confext => "CONFEXT_SCOPE",
        }
    }

    /// `SYSEXT_LEVEL` / `CONFEXT_LEVEL`.
    pub fn level_key(self) -> &'static str {
        match self {
            Class::Sysext => "SYSEXT_LEVEL",
            Class::Confext => "CONFEXT_LEVEL",
        }
    }

    /// systemd's mount flags: configuration is never executable.
    pub fn mount_attrs(self) -> MountAttrFlags {
        match self {
            Class::Sysext => MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV,
            Class::Confext => {
                MountAttrFlags::MOUNT_ATTR_RDONLY
                    | MountAttrFlags::MOUNT_ATTR_NODEV
                    | MountAttrFlags::MOUNT_ATTR_NOSUID
                    | MountAttrFlags::MOUNT_ATTR_NOEXEC
            }
        }
    }

    /// The unit the booted system would merge this class with.
    pub fn systemd_unit(self) -> &'static str {
        match self {
            Class::Sysext => "systemd-sysext.service",
            Class::Confext => "systemd-confext.service",
        }
    }
}
