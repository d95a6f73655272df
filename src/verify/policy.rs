//! Image policies (`systemd.image-policy(7)`): which partitions of an
//! extension image may be used, and with which protection.
//!
//! The text form and its meaning follow systemd v260: rules
//! `designator=flag+flag` joined by `:`, an empty designator for the default
//! rule, `*`/`-`/`~` as whole-policy shorthands, and unlisted `*-verity` /
//! `*-verity-sig` partitions inheriting a policy from their data partition.
//! Parsing is strict, as for `--image-policy=` on systemd's command line.
//!
//! Where rdext deliberately differs from systemd:
//! * `signed` means signed. [`ImagePolicy::check`] returns
//!   `Use(Protection::Signed)` only to say "verify the signature"; a failed
//!   verification must fail the image, never fall back to plain verity.
//! * A partition that exists but cannot be used as the policy demands is
//!   ignored when the policy also allows `unused` (systemd would mount it
//!   without protection in some of these cases).
//! * File-system type flags (`erofs`, …) are refused: rdext cannot enforce
//!   them, and silently dropping a restriction would weaken the policy.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A partition type of the Discoverable Partitions Specification, without
/// its architecture. The order is systemd's, which sorts the text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Designator {
    Root,
    Usr,
    Home,
    Srv,
    Esp,
    Xbootldr,
    Swap,
    RootVerity,
    UsrVerity,
    RootVeritySig,
    UsrVeritySig,
    Tmp,
    Var,
}

impl Designator {
    /// Every designator with its name, in systemd's order (= index).
    const NAMES: [(Designator, &'static str); 13] = [
        (Self::Root, "root"),
        (Self::Usr, "usr"),
        (Self::Home, "home"),
        (Self::Srv, "srv"),
        (Self::Esp, "esp"),
        (Self::Xbootldr, "xbootldr"),
        (Self::Swap, "swap"),
        (Self::RootVerity, "root-verity"),
        (Self::UsrVerity, "usr-verity"),
        (Self::RootVeritySig, "root-verity-sig"),
        (Self::UsrVeritySig, "usr-verity-sig"),
        (Self::Tmp, "tmp"),
        (Self::Var, "var"),
    ];

    /// The name used in policy strings and messages.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize].1
    }
}

impl fmt::Display for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Designator {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let found = Self::NAMES.iter().find(|(_, name)| *name == s);
        found
            .map(|(d, _)| *d)
            .ok_or_else(|| PolicyError::UnknownDesignator(s.to_owned()))
    }
}

/// The flags of one rule, in three groups (use/protection, GPT read-only,
/// GPT growfs). In the text form a group with no flag means "any"; values
/// held by an [`ImagePolicy`] have such groups filled in ([`Self::extended`]),
/// so an empty use group there means the partition can satisfy nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionPolicy(u16);

impl PartitionPolicy {
    pub const VERITY: Self = Self(1 << 0);
    pub const SIGNED: Self = Self(1 << 1);
    pub const ENCRYPTED: Self = Self(1 << 2);
    pub const ENCRYPTED_WITH_INTEGRITY: Self = Self(1 << 3);
    pub const UNPROTECTED: Self = Self(1 << 4);
    pub const UNUSED: Self = Self(1 << 5);
    pub const ABSENT: Self = Self(1 << 6);
    pub const READ_ONLY_ON: Self = Self(1 << 7);
    pub const READ_ONLY_OFF: Self = Self(1 << 8);
    pub const GROWFS_ON: Self = Self(1 << 9);
    pub const GROWFS_OFF: Self = Self(1 << 10);
    /// Every use/protection flag: the partition may be anything.
    pub const OPEN: Self = Self(0x7f);
    /// `unused+absent`: the partition may exist but is never used.
    pub const IGNORE: Self = Self(Self::UNUSED.0 | Self::ABSENT.0);

    const READ_ONLY: u16 = Self::READ_ONLY_ON.0 | Self::READ_ONLY_OFF.0;
    const GROWFS: u16 = Self::GROWFS_ON.0 | Self::GROWFS_OFF.0;
    const GPT: u16 = Self::READ_ONLY | Self::GROWFS;
    const VERITY_ANY: u16 = Self::VERITY.0 | Self::SIGNED.0;
    const ENCRYPTED_ANY: u16 = Self::ENCRYPTED.0 | Self::ENCRYPTED_WITH_INTEGRITY.0;

    /// Every flag in text order (use/protection first), without shortcuts.
    const NAMES: [(Self, &'static str); 11] = [
        (Self::VERITY, "verity"),
        (Self::SIGNED, "signed"),
        (Self::ENCRYPTED, "encrypted"),
        (Self::ENCRYPTED_WITH_INTEGRITY, "encryptedwithintegrity"),
        (Self::UNPROTECTED, "unprotected"),
        (Self::UNUSED, "unused"),
        (Self::ABSENT, "absent"),
        (Self::READ_ONLY_ON, "read-only-on"),
        (Self::READ_ONLY_OFF, "read-only-off"),
        (Self::GROWFS_ON, "growfs-on"),
        (Self::GROWFS_OFF, "growfs-off"),
    ];

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Fill each group that has no flag with all of its flags ("empty
    /// means any"). An absent partition has no GPT flags to check, so an
    /// `absent`-only policy allows any, making equal policies compare equal.
    pub const fn extended(self) -> Self {
        let mut f = self.0;
        if f & Self::OPEN.0 == 0 {
            f |= Self::OPEN.0;
        }
        if f & Self::READ_ONLY == 0 || f & Self::OPEN.0 == Self::ABSENT.0 {
            f |= Self::READ_ONLY;
        }
        if f & Self::GROWFS == 0 || f & Self::OPEN.0 == Self::ABSENT.0 {
            f |= Self::GROWFS;
        }
        Self(f)
    }

    const fn uses(self) -> u16 {
        self.0 & Self::OPEN.0
    }

    /// systemd's per-designator view: verity flags mean nothing where
    /// there is no verity, and hash/signature partitions are the
    /// protection themselves, so only their presence can be asked for.
    /// Expects an extended value; an empty group stays empty (an
    /// intersection may leave nothing allowed).
    fn normalized(self, d: Designator) -> Self {
        let mut f = self.0;
        if verity_source(d).is_some() {
            f &= !(Self::VERITY_ANY | Self::ENCRYPTED_ANY);
        } else if !matches!(d, Designator::Root | Designator::Usr) {
            f &= !Self::VERITY_ANY;
        }
        if f & Self::OPEN.0 == Self::ABSENT.0 {
            f |= Self::GPT;
        }
        Self(f)
    }
}

impl std::ops::BitOr for PartitionPolicy {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Canonical flags text: `open`/`ignore` for those use groups, GPT flags
/// only where their group is restricted, `-` when nothing is left.
impl fmt::Display for PartitionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        let mut shown = self.0;
        for (shortcut, word) in [(Self::OPEN, "open"), (Self::IGNORE, "ignore")] {
            if self.uses() == shortcut.0 {
                words.push(word);
                shown &= !shortcut.0;
            }
        }
        for group in [Self::READ_ONLY, Self::GROWFS] {
            if shown & group == group {
                shown &= !group;
            }
        }
        words.extend(
            Self::NAMES
                .iter()
                .filter(|(b, _)| shown & b.0 != 0)
                .map(|(_, n)| *n),
        );
        if words.is_empty() {
            words.push("-");
        }
        f.write_str(&words.join("+"))
    }
}

/// Parses the flags of one rule (`verity+signed`; empty or `-` for any),
/// extended.
impl FromStr for PartitionPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let mut flags = Self(0);
        let s = s.trim();
        if !s.is_empty() && s != "-" {
            for word in s.split('+').map(str::trim) {
                flags = flags | flag_from_word(word)?;
            }
        }
        Ok(flags.extended())
    }
}

fn flag_from_word(word: &str) -> Result<PartitionPolicy, PolicyError> {
    if let Some((flag, _)) = PartitionPolicy::NAMES.iter().find(|(_, n)| *n == word) {
        return Ok(*flag);
    }
    match word {
        "open" => Ok(PartitionPolicy::OPEN),
        "ignore" => Ok(PartitionPolicy::IGNORE),
        "btrfs" | "erofs" | "ext4" | "f2fs" | "squashfs" | "vfat" | "xfs" => {
            Err(PolicyError::UnsupportedFlag(word.to_owned()))
        }
        _ => Err(PolicyError::UnknownFlag(word.to_owned())),
    }
}

/// For a verity hash or signature partition: its data partition and the
/// data flags that make it useful (any verity for the hash, `signed` for
/// the signature).
fn verity_source(d: Designator) -> Option<(Designator, u16)> {
    match d {
        Designator::RootVerity => Some((Designator::Root, PartitionPolicy::VERITY_ANY)),
        Designator::UsrVerity => Some((Designator::Usr, PartitionPolicy::VERITY_ANY)),
        Designator::RootVeritySig => Some((Designator::Root, PartitionPolicy::SIGNED.0)),
        Designator::UsrVeritySig => Some((Designator::Usr, PartitionPolicy::SIGNED.0)),
        _ => None,
    }
}

/// What was found for a partition, as the dissection sees it: `Signed`
/// when the hash and signature partitions (or sidecars) exist, whether or
/// not the signature has been checked yet. Hash and signature partitions
/// themselves are `Unprotected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// A hash partition (or `.verity` sidecar), but no signature.
    Verity,
    /// A hash and a signature; only `Use(Signed)` asks to check it.
    Signed,
    /// LUKS without integrity; systemd treats it as distinct from
    /// `EncryptedWithIntegrity`, neither flag admits the other.
    Encrypted,
    /// LUKS whose every segment has integrity protection.
    EncryptedWithIntegrity,
    /// A plain file system.
    Unprotected,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Verity => "verity-protected without signature",
            Self::Signed => "signed",
            Self::Encrypted => "encrypted",
            Self::EncryptedWithIntegrity => "encrypted with integrity",
            Self::Unprotected => "unprotected",
        })
    }
}

/// The verdict on one partition that the policy accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Use it, set up as given: the strongest protection both the image
    /// offers and the policy allows (a signed image under a `verity`
    /// policy is set up as plain verity, under `unprotected` without it).
    Use(Protection),
    /// Do not use it: the policy says `unused`, or it is absent and may be.
    Ignore,
}

/// Why a well-formed policy string could not be read, or a level word.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("unknown partition designator \"{0}\" in image policy")]
    UnknownDesignator(String),
    #[error("unknown image policy flag \"{0}\"")]
    UnknownFlag(String),
    #[error("image policy flag \"{0}\" (file system type) is not supported by rdext")]
    UnsupportedFlag(String),
    #[error("partition designator \"{0}\" appears more than once in image policy")]
    DuplicateDesignator(Designator),
    #[error("default rule (\"=flags\") appears more than once in image policy")]
    DuplicateDefault,
    #[error("image policy rule \"{0}\" lacks \"=\"")]
    MissingEquals(String),
    #[error("empty rule in image policy (stray \":\")")]
    EmptyRule,
    #[error("unknown policy level \"{0}\" (expected signed, verity or any)")]
    UnknownLevel(String),
}

/// Why the policy refuses an image; each renders as a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyViolation {
    #[error("{0} partition exists but policy requires it to be absent")]
    MustBeAbsent(Designator),
    #[error("{0} partition is absent but policy requires {req}", req = describe(*.1))]
    Missing(Designator, PartitionPolicy),
    #[error("{0} partition is {1} but policy requires {req}", req = describe(*.2))]
    Protection(Designator, Protection, PartitionPolicy),
    #[error("policy allows nothing for the {0} partition, not even its absence")]
    Impossible(Designator),
    #[error(
        "{0} partition has GPT flag {1} {is} but policy requires it {want}",
        is = on_off(*.2),
        want = on_off(!*.2)
    )]
    GptFlag(Designator, &'static str, bool),
}

fn on_off(b: bool) -> &'static str {
    ["off", "on"][usize::from(b)]
}

/// The accepted states of a partition that is, or should be, present.
fn describe(p: PartitionPolicy) -> String {
    let names: Vec<&str> = PartitionPolicy::NAMES[..6]
        .iter()
        .filter(|(b, _)| p.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_owned(),
    }
}

/// A whole policy: explicit rules per designator plus the default rule
/// for every unlisted one. Rules are kept as written (extended), so two
/// policies are equal when their canonical texts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagePolicy {
    rules: [Option<PartitionPolicy>; 13],
    default: PartitionPolicy,
}

/// systemd's root/usr rule for the class defaults: anything, or absent.
const ANY_DATA: PartitionPolicy =
    PartitionPolicy(PartitionPolicy::OPEN.0 & !PartitionPolicy::UNUSED.0);
const SIGNED_OR_ABSENT: PartitionPolicy =
    PartitionPolicy(PartitionPolicy::SIGNED.0 | PartitionPolicy::ABSENT.0);
const VERITY_OR_ABSENT: PartitionPolicy =
    PartitionPolicy(PartitionPolicy::VERITY_ANY | PartitionPolicy::ABSENT.0);

impl ImagePolicy {
    /// Parses strictly: any unknown or repeated word is an error.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s {
            "" | "-" => return Ok(Self::only_default(PartitionPolicy::IGNORE)),
            "*" => return Ok(Self::only_default(PartitionPolicy::OPEN)),
            "~" => return Ok(Self::deny()),
            _ => {}
        }
        let mut policy = Self::only_default(PartitionPolicy::IGNORE);
        let mut default_seen = false;
        for rule in s.split(':') {
            let Some((name, flags)) = rule.split_once('=') else {
                return Err(match rule.trim() {
                    "" => PolicyError::EmptyRule,
                    _ => PolicyError::MissingEquals(rule.to_owned()),
                });
            };
            match name.trim() {
                "" if default_seen => return Err(PolicyError::DuplicateDefault),
                "" => {
                    default_seen = true;
                    policy.default = flags.parse()?;
                }
                name => {
                    let d: Designator = name.parse()?;
                    if policy.rules[d as usize].is_some() {
                        return Err(PolicyError::DuplicateDesignator(d));
                    }
                    policy.rules[d as usize] = Some(flags.parse()?);
                }
            }
        }
        Ok(policy)
    }

    /// systemd-sysext's default: root or usr in any protection, rest ignored.
    pub fn sysext_default() -> Self {
        Self::with_rules(&[(Designator::Root, ANY_DATA), (Designator::Usr, ANY_DATA)])
    }

    /// systemd-confext's default: the root in any protection, rest ignored.
    pub fn confext_default() -> Self {
        Self::with_rules(&[(Designator::Root, ANY_DATA)])
    }

    /// systemd's policy for sysexts handed over by systemd-stub.
    pub fn sysext_strict() -> Self {
        Self::with_rules(&[
            (Designator::Root, SIGNED_OR_ABSENT),
            (Designator::Usr, SIGNED_OR_ABSENT),
        ])
    }

    /// systemd's policy for confexts handed over by systemd-stub.
    pub fn confext_strict() -> Self {
        Self::with_rules(&[(Designator::Root, SIGNED_OR_ABSENT)])
    }

    /// `~`: every partition must be absent, so no image passes.
    pub fn deny() -> Self {
        Self::only_default(PartitionPolicy::ABSENT)
    }

    fn only_default(default: PartitionPolicy) -> Self {
        Self {
            rules: [None; 13],
            default: default.extended(),
        }
    }

    fn with_rules(rules: &[(Designator, PartitionPolicy)]) -> Self {
        let mut policy = Self::only_default(PartitionPolicy::IGNORE);
        for &(d, flags) in rules {
            policy.rules[d as usize] = Some(flags.extended());
        }
        policy
    }

    /// The effective policy of a partition, including systemd's derivation
    /// for unlisted `*-verity` / `*-verity-sig` partitions: usable when the
    /// data partition's rule allows verity (hash) or `signed` (signature),
    /// optional as far as the data partition is; otherwise the default rule.
    pub fn partition(&self, d: Designator) -> PartitionPolicy {
        if let Some(flags) = self.rules[d as usize] {
            return flags.normalized(d);
        }
        let derived = verity_source(d).and_then(|(data, needed)| {
            let df = self.rules[data as usize]?.normalized(data);
            (df.0 & needed != 0).then(|| {
                let inherited = df.0 & (PartitionPolicy::IGNORE.0 | PartitionPolicy::GPT);
                PartitionPolicy(PartitionPolicy::UNPROTECTED.0 | inherited).normalized(d)
            })
        });
        derived.unwrap_or_else(|| self.default.normalized(d))
    }

    /// The policy that accepts only what both accept: for each partition,
    /// the flags both allow. A less trusted source can so tighten a policy
    /// but never loosen it.
    pub fn intersect(&self, other: &ImagePolicy) -> ImagePolicy {
        let mut out = ImagePolicy {
            rules: [None; 13],
            default: PartitionPolicy(self.default.0 & other.default.0),
        };
        for (d, _) in Designator::NAMES {
            let both = self.partition(d).0 & other.partition(d).0;
            out.rules[d as usize] = Some(PartitionPolicy(both));
        }
        // Drop the rules that the default or a derivation already gives,
        // for a readable canonical text.
        for (d, _) in Designator::NAMES {
            let mut without = out;
            without.rules[d as usize] = None;
            if Designator::NAMES
                .iter()
                .all(|(e, _)| without.partition(*e) == out.partition(*e))
            {
                out = without;
            }
        }
        out
    }

    /// Judge one partition: `found` is `None` if the image lacks it, else
    /// its protection. The reason in an error is one line for the log.
    pub fn check(
        &self,
        d: Designator,
        found: Option<Protection>,
    ) -> Result<Decision, PolicyViolation> {
        let policy = self.partition(d);
        let uses = policy.uses();
        let (absent, unused) = (PartitionPolicy::ABSENT.0, PartitionPolicy::UNUSED.0);
        if uses == 0 {
            return Err(PolicyViolation::Impossible(d));
        }
        let Some(found) = found else {
            return match uses & absent {
                0 => Err(PolicyViolation::Missing(d, policy)),
                _ => Ok(Decision::Ignore),
            };
        };
        if uses == absent {
            return Err(PolicyViolation::MustBeAbsent(d));
        }
        if uses & !absent == unused {
            return Ok(Decision::Ignore);
        }
        match setup(found, policy) {
            Some(mode) => Ok(Decision::Use(mode)),
            None if uses & unused != 0 => Ok(Decision::Ignore),
            None => Err(PolicyViolation::Protection(d, found, policy)),
        }
    }

    /// Checks the GPT `read-only` and `growfs` flags of a present
    /// partition (both off for a file system without partition table).
    pub fn check_gpt_flags(
        &self,
        d: Designator,
        read_only: bool,
        growfs: bool,
    ) -> Result<(), PolicyViolation> {
        use PartitionPolicy as P;
        let policy = self.partition(d);
        for (flag, set, on, off) in [
            ("read-only", read_only, P::READ_ONLY_ON, P::READ_ONLY_OFF),
            ("growfs", growfs, P::GROWFS_ON, P::GROWFS_OFF),
        ] {
            if !policy.contains(if set { on } else { off }) {
                return Err(PolicyViolation::GptFlag(d, flag, set));
            }
        }
        Ok(())
    }
}

/// How to set up a partition found with `found` under `policy`, as
/// systemd's activation does: a signature is checked only if `signed` is
/// allowed; an unsigned verity image is refused when `signed` is allowed
/// but plain `verity` is not, even if `unprotected` is.
fn setup(found: Protection, policy: PartitionPolicy) -> Option<Protection> {
    use Protection::{Encrypted, EncryptedWithIntegrity, Signed, Unprotected, Verity};
    let allows = |flag| policy.contains(flag);
    match found {
        Signed if allows(PartitionPolicy::SIGNED) => Some(Signed),
        Signed | Verity if allows(PartitionPolicy::VERITY) => Some(Verity),
        Verity if allows(PartitionPolicy::SIGNED) => None,
        Signed | Verity | Unprotected if allows(PartitionPolicy::UNPROTECTED) => Some(Unprotected),
        Encrypted if allows(PartitionPolicy::ENCRYPTED) => Some(Encrypted),
        EncryptedWithIntegrity if allows(PartitionPolicy::ENCRYPTED_WITH_INTEGRITY) => Some(found),
        _ => None,
    }
}

/// Canonical text, systemd's simplified style: rules in designator order,
/// the `ignore` default left out, `*`/`-`/`~` for rule-less policies.
impl fmt::Display for ImagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ignore = PartitionPolicy::IGNORE.extended();
        if self.rules.iter().all(Option::is_none) {
            let symbol = [
                (PartitionPolicy::OPEN, "*"),
                (PartitionPolicy::IGNORE, "-"),
                (PartitionPolicy::ABSENT, "~"),
            ]
            .into_iter()
            .find(|(p, _)| p.extended() == self.default);
            if let Some((_, symbol)) = symbol {
                return f.write_str(symbol);
            }
        }
        let mut rules: Vec<String> = Designator::NAMES
            .iter()
            .filter_map(|(d, name)| self.rules[*d as usize].map(|p| format!("{name}={p}")))
            .collect();
        if self.default != ignore {
            rules.push(format!("={}", self.default));
        }
        f.write_str(&rules.join(":"))
    }
}

/// rdext's one-word switch `rdext.policy=signed|verity|any`: `signed` is
/// the class's strict policy, `verity` refuses only unprotected data,
/// `any` is the class default.
pub fn from_level(level: &str, class_is_sysext: bool) -> Result<ImagePolicy, PolicyError> {
    Ok(match (level, class_is_sysext) {
        ("signed", true) => ImagePolicy::sysext_strict(),
        ("signed", false) => ImagePolicy::confext_strict(),
        ("verity", true) => ImagePolicy::with_rules(&[
            (Designator::Root, VERITY_OR_ABSENT),
            (Designator::Usr, VERITY_OR_ABSENT),
        ]),
        ("verity", false) => ImagePolicy::with_rules(&[(Designator::Root, VERITY_OR_ABSENT)]),
        ("any", true) => ImagePolicy::sysext_default(),
        ("any", false) => ImagePolicy::confext_default(),
        _ => return Err(PolicyError::UnknownLevel(level.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImagePolicy {
        ImagePolicy::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Splits a table row `a | b | c` into its cells.
    fn cells(row: &str) -> Vec<&str> {
        row.split(" | ").collect()
    }

    /// A policy cell: a level word (sysext), `deny`, or a policy string.
    fn policy(cell: &str) -> ImagePolicy {
        match cell {
            "deny" => ImagePolicy::deny(),
            "confext" => ImagePolicy::confext_default(),
            _ => from_level(cell, true).unwrap_or_else(|_| parse(cell)),
        }
    }

    fn protection(cell: &str) -> Option<Protection> {
        let all = [
            Protection::Verity,
            Protection::Signed,
            Protection::Encrypted,
            Protection::EncryptedWithIntegrity,
            Protection::Unprotected,
        ];
        all.into_iter().find(|p| format!("{p:?}") == cell)
    }

    #[test]
    fn designator_names_round_trip() {
        for (d, name) in Designator::NAMES {
            assert_eq!(name.parse::<Designator>(), Ok(d));
            assert_eq!(d.to_string(), name);
        }
        let e = PolicyError::UnknownDesignator("ROOT".into());
        assert_eq!("ROOT".parse::<Designator>(), Err(e));
    }

    #[test]
    fn canonical_formatting() {
        for row in [
            " | -",
            "- | -",
            "=unused+absent | -",
            "=ignore | -",
            "* | *",
            "= | *",
            "=open | *",
            "=verity+signed+encrypted+encryptedwithintegrity+unprotected+unused+absent | *",
            "~ | ~",
            "=absent+read-only-on | ~",
            "=verity | =verity",
            "root= | root=open",
            "root=- | root=open",
            "root=open | root=open",
            "root=verity+signed:usr=verity+signed:=unused+absent | root=verity+signed:usr=verity+signed",
            "usr=verity+read-only-on:root=encrypted | root=encrypted:usr=verity+read-only-on",
            "srv=encrypted+absent:swap=absent:=- | srv=encrypted+absent:swap=absent:=open",
            "root=unprotected+encrypted:swap=absent+unused | root=encrypted+unprotected:swap=ignore",
            "root=read-only-on+read-only-off+growfs-off | root=open+growfs-off",
            "root=absent+signed+verity | root=verity+signed+absent",
            "root=absent+growfs-on | root=absent",
            " root = verity + signed :=absent | root=verity+signed:=absent",
            "var=ignore:root-verity-sig=unused | root-verity-sig=unused:var=ignore",
        ] {
            let c = cells(row);
            assert_eq!(parse(c[0]).to_string(), c[1], "{row:?}");
        }
        assert_eq!(parse(""), parse("-"));
        assert_eq!(parse("~"), ImagePolicy::deny());
        assert_eq!(
            parse("root="),
            parse("root=verity+signed+encrypted+encryptedwithintegrity+open")
        );
    }

    #[test]
    fn round_trips() {
        for p in ["any", "signed", "verity", "deny", "confext"].map(policy) {
            assert_eq!(parse(&p.to_string()), p);
        }
        // Random policies over every designator and flag word.
        let words: Vec<&str> = PartitionPolicy::NAMES.iter().map(|(_, n)| *n).collect();
        let words = [&words[..], &["open", "ignore", "-"]].concat();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        for _ in 0..3000 {
            let mut names: Vec<&str> = Designator::NAMES.iter().map(|(_, n)| *n).collect();
            names.push("");
            let rules: Vec<String> = (0..next(5))
                .map(|_| {
                    let name = names.remove(next(names.len()));
                    let flags: Vec<&str> = (0..next(4)).map(|_| words[next(words.len())]).collect();
                    format!("{name}={}", flags.join("+"))
                })
                .collect();
            let Ok(p) = ImagePolicy::parse(&rules.join(":")) else {
                continue; // a "-" next to another flag
            };
            let text = p.to_string();
            assert_eq!(parse(&text), p, "{rules:?} -> {text:?}");
            assert_eq!(parse(&text).to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_strings() {
        for row in [
            r#"foo=verity | UnknownDesignator("foo")"#,
            r#"ROOT=verity | UnknownDesignator("ROOT")"#,
            r#"root=bogus | UnknownFlag("bogus")"#,
            r#"root=verity=signed | UnknownFlag("verity=signed")"#,
            r#"root=verity++signed | UnknownFlag("")"#,
            r#"root=verity+ | UnknownFlag("")"#,
            r#"root=-+verity | UnknownFlag("-")"#,
            r#"root=erofs | UnsupportedFlag("erofs")"#,
            "root=verity:root=signed | DuplicateDesignator(Root)",
            "=verity:usr=signed:=absent | DuplicateDefault",
            "root=verity: | EmptyRule",
            ":root=verity | EmptyRule",
            "root=verity::usr=verity | EmptyRule",
            r#"root | MissingEquals("root")"#,
            r#"*: | MissingEquals("*")"#,
        ] {
            let c = cells(row);
            let e = ImagePolicy::parse(c[0]).expect_err(row);
            assert_eq!(format!("{e:?}"), c[1]);
        }
        let message = |s: &str| ImagePolicy::parse(s).unwrap_err().to_string();
        assert_eq!(
            message("homer=absent"),
            "unknown partition designator \"homer\" in image policy"
        );
        assert_eq!(
            message("root=verity+bogus"),
            "unknown image policy flag \"bogus\""
        );
        assert!(message("usr=verity:usr=signed").contains("\"usr\""));
    }

    #[test]
    fn derived_verity_policies() {
        for row in [
            "signed | root-verity | unprotected+absent",
            "signed | root-verity-sig | unprotected+absent",
            "signed | usr-verity | unprotected+absent",
            "signed | usr-verity-sig | unprotected+absent",
            "signed | home | ignore",
            "any | root-verity-sig | unprotected+absent",
            "root=verity+read-only-on:=absent | root-verity | unprotected+read-only-on",
            "root=verity+read-only-on:=absent | root-verity-sig | absent",
            "root=verity+read-only-on:=absent | usr-verity | absent",
            "root=unprotected | root-verity | ignore",
            "root=signed+unused:root-verity=absent | root-verity | absent",
            "root=signed+unused:root-verity=absent | root-verity-sig | unprotected+unused",
            "* | usr-verity-sig | unprotected+unused+absent",
            "root-verity=verity+absent | root-verity | absent",
            "=verity+signed+absent | home | absent",
            "=verity+signed+absent | root | verity+signed+absent",
        ] {
            let c = cells(row);
            let d: Designator = c[1].parse().unwrap();
            assert_eq!(policy(c[0]).partition(d).to_string(), c[2], "{row:?}");
        }
        let impossible = parse("=verity").check(Designator::Esp, None);
        assert_eq!(
            impossible,
            Err(PolicyViolation::Impossible(Designator::Esp))
        );
    }

    #[test]
    fn check_verdicts() {
        for row in [
            "any | usr | - | ignore",
            "any | root | Signed | use Signed",
            "any | root | Verity | use Verity",
            "any | root | Unprotected | use Unprotected",
            "any | root | Encrypted | use Encrypted",
            "any | usr | EncryptedWithIntegrity | use EncryptedWithIntegrity",
            "any | root-verity | Unprotected | use Unprotected",
            "any | home | Unprotected | ignore",
            "confext | usr | Signed | ignore",
            "signed | root | - | ignore",
            "signed | root | Signed | use Signed",
            "signed | root-verity-sig | Unprotected | use Unprotected",
            "signed | root | Unprotected | root partition is unprotected but policy requires signed",
            "signed | usr | Encrypted | usr partition is encrypted but policy requires signed",
            "verity | root | Signed | use Signed",
            "verity | usr | Verity | use Verity",
            "verity | usr | - | ignore",
            "verity | root | Unprotected | root partition is unprotected but policy requires verity or signed",
            "deny | root | - | ignore",
            "deny | root | Signed | root partition exists but policy requires it to be absent",
            "root=verity | root | Signed | use Verity",
            "root=unprotected | root | Signed | use Unprotected",
            "root=unprotected | root | Verity | use Unprotected",
            "root=signed+unused | root | Verity | ignore",
            "root=verity+unused | root | Unprotected | ignore",
            "root=unused | root | Signed | ignore",
            "root=verity | root | - | root partition is absent but policy requires verity",
            "root=unused | root | - | root partition is absent but policy requires unused",
        ] {
            let c = cells(row);
            let verdict = match policy(c[0]).check(c[1].parse().unwrap(), protection(c[2])) {
                Ok(Decision::Use(p)) => format!("use {p:?}"),
                Ok(Decision::Ignore) => "ignore".to_owned(),
                Err(e) => e.to_string(),
            };
            assert_eq!(verdict, c[3], "{row:?}");
        }
        let check = |p: &str, found| parse(p).check(Designator::Root, Some(found));
        assert!(check("root=signed+unprotected", Protection::Verity).is_err());
        assert!(check("root=encrypted", Protection::EncryptedWithIntegrity).is_err());
        let e = ImagePolicy::sysext_strict().check(Designator::Usr, Some(Protection::Verity));
        let expected =
            "usr partition is verity-protected without signature but policy requires signed";
        assert_eq!(e.unwrap_err().to_string(), expected);
        let e = parse("root=verity+signed+encrypted+unused").check(Designator::Root, None);
        let expected =
            "root partition is absent but policy requires verity, signed, encrypted or unused";
        assert_eq!(e.unwrap_err().to_string(), expected);
    }

    #[test]
    fn gpt_flags() {
        use Designator::*;
        let p = parse("root=verity+read-only-on:usr=growfs-off:=absent");
        assert_eq!(p.check_gpt_flags(Root, true, true), Ok(()));
        assert_eq!(p.check_gpt_flags(Home, false, true), Ok(()));
        let e = PolicyViolation::GptFlag(Usr, "growfs", true);
        assert_eq!(p.check_gpt_flags(Usr, false, true), Err(e));
        let e = p
            .check_gpt_flags(RootVerity, false, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "root-verity partition has GPT flag read-only off but policy requires it on"
        );
    }

    #[test]
    fn class_policies_and_levels() {
        let any = "verity+signed+encrypted+encryptedwithintegrity+unprotected+absent";
        let sysext = ImagePolicy::sysext_default().to_string();
        assert_eq!(sysext, format!("root={any}:usr={any}"));
        let confext = parse(&format!("root={any}:=unused+absent"));
        assert_eq!(ImagePolicy::confext_default(), confext);
        let strict = parse("root=signed+absent:usr=signed+absent:=unused+absent");
        assert_eq!(ImagePolicy::sysext_strict(), strict);
        assert_eq!(
            ImagePolicy::confext_strict().to_string(),
            "root=signed+absent"
        );
        assert_eq!(ImagePolicy::deny().to_string(), "~");
        for row in [
            "signed | true | root=signed+absent:usr=signed+absent",
            "signed | false | root=signed+absent",
            "verity | true | root=verity+signed+absent:usr=verity+signed+absent",
            "verity | false | root=verity+signed+absent",
        ] {
            let c = cells(row);
            let p = from_level(c[0], c[1] == "true").unwrap();
            assert_eq!(p.to_string(), c[2]);
        }
        assert_eq!(from_level("any", true), Ok(ImagePolicy::sysext_default()));
        assert_eq!(from_level("any", false), Ok(ImagePolicy::confext_default()));
        let e = PolicyError::UnknownLevel("Signed".into());
        assert_eq!(from_level("Signed", true), Err(e));
        let e = from_level("", false).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown policy level \"\" (expected signed, verity or any)"
        );
    }

    #[test]
    fn intersection_only_tightens() {
        let any = ImagePolicy::sysext_default();
        let strict = ImagePolicy::sysext_strict();
        let verity = from_level("verity", true).unwrap();
        // Either order; the stricter side wins, the looser adds nothing.
        assert_eq!(any.intersect(&strict), strict);
        assert_eq!(strict.intersect(&any), strict);
        assert_eq!(verity.intersect(&strict), strict);
        assert_eq!(any.intersect(&verity), verity);
        assert_eq!(parse("*").intersect(&any), any);
        assert_eq!(any.intersect(&ImagePolicy::deny()).to_string(), "~");
        // Nothing both allow is nothing, not "any".
        let signed_only = parse("root=signed:usr=signed");
        let unprotected = parse("root=unprotected:usr=unprotected");
        let none = signed_only.intersect(&unprotected);
        assert_eq!(
            none.check(Designator::Root, Some(Protection::Unprotected)),
            Err(PolicyViolation::Impossible(Designator::Root))
        );
        assert_eq!(
            none.check(Designator::Root, Some(Protection::Signed)),
            Err(PolicyViolation::Impossible(Designator::Root))
        );
        // GPT flags: both restrictions hold.
        let ro = parse("root=signed+read-only-on");
        let both = ro.intersect(&parse("root=signed+verity+growfs-off"));
        assert_eq!(both.to_string(), "root=signed+read-only-on+growfs-off");
        assert!(both.check_gpt_flags(Designator::Root, true, true).is_err());
        assert!(both.check_gpt_flags(Designator::Root, true, false).is_ok());
    }
}
