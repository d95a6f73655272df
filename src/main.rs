//! The `rdext` command: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rdext::class::Class;
use rdext::cmdline::KernelCmdline;
use rdext::config::{Setting, Settings};
#[cfg(feature = "download")]
use rdext::fetch::download::{self, DownloadMode, DownloadOptions};
#[cfg(feature = "download")]
use rdext::fetch::pull::{self, PullOptions};
use rdext::merge::{self, MergeError, Options, PolicyChoice, Verdict};
use rdext::mount::overlay::Mutable;
use rdext::verify::policy::{self, ImagePolicy};

/// Every command: name, operands and the options that apply, what it does.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "merge",
        "[--root DIR] [--initrd-root DIR] [--run-dir DIR] [--cmdline FILE] [--modules-dir DIR] \
         [--mutable=MODE] [--config FILE]... [--verity-dir DIR]... [--strict] [--debug]",
        "merge extensions into the root (honours the kernel command line)",
    ),
    (
        "refresh",
        "[--root DIR] [--initrd-root DIR] [--run-dir DIR] [--cmdline FILE] [--modules-dir DIR] \
         [--mutable=MODE] [--always] [--config FILE]... [--verity-dir DIR]... [--strict] [--debug]",
        "merge again from the images there now, replacing each merged\n\
         hierarchy atomically; nothing happens when nothing changed\n\
         (same images, same mode) unless --always",
    ),
    (
        "list",
        "[--root DIR] [--initrd-root DIR] [--run-dir DIR] [--config FILE]... [--json] [--debug]",
        "show every image found and whether it would merge, and why",
    ),
    (
        "status",
        "[--root DIR] [--json]",
        "show the merged hierarchies",
    ),
    (
        "unmerge",
        "[--root DIR] [--run-dir DIR]",
        "remove the merged overlays",
    ),
    (
        "bless",
        "[--root DIR] [--run-dir DIR]",
        "the boot is good: remove the boot counter of the .v/ entries\n\
         this boot's merge counted (rdext-bless.service)",
    ),
    (
        "download",
        "[--root DIR] [--initrd-root DIR] [--cmdline FILE] [--config FILE]... [--debug]",
        "fetch missing extensions as systemd-sysupdate would (merge does\n\
         this first when downloads are on: rdext.download=missing|update|no,\n\
         default missing on first boot)",
    ),
    (
        "verify",
        "[--confext] [--json] [--root DIR] [--initrd-root DIR] [--cmdline FILE] [--config FILE]... \
         [--verity-dir DIR]... IMAGE...",
        "show an image's partitions, root hash, signer and the policy's\n\
         verdict (as a sysext; --confext to judge as one)",
    ),
    ("help", "[COMMAND]", "show this help, or a command's"),
];

/// Every option and what it means.
const OPTIONS: &[(&str, &str)] = &[
    (
        "--root DIR",
        "root to extend (default: /sysroot in an initrd, else /)",
    ),
    (
        "--initrd-root DIR",
        "judge as the initrd whose root is DIR: also take images\n\
         from DIR/run/extensions and DIR/.extra/sysext, read its\n\
         rdext.conf and verity.d (default: / in an initrd, else none)",
    ),
    (
        "--run-dir DIR",
        "runtime directory for the workspace and record (default: /run)",
    ),
    (
        "--cmdline FILE",
        "kernel command line to obey (default: /proc/cmdline)",
    ),
    (
        "--modules-dir DIR",
        "modules of the running kernel, loaded early\n\
         (default: /lib/modules/$(uname -r))",
    ),
    ("--strict", "merge nothing if any image is rejected"),
    (
        "--mutable=MODE",
        "no, auto, yes, import, ephemeral or ephemeral-import, as\n\
         systemd-sysext (default: rdext.mutable= on the kernel\n\
         command line, else mutable= in the settings, else no)",
    ),
    ("--always", "refresh even when nothing changed"),
    (
        "--config FILE",
        "settings file, repeatable, earlier wins (default: the\n\
         initrd's etc/rdext.conf, else ROOT/etc/rdext.conf; with an\n\
         initrd root, ROOT/etc/rdext.conf may only tighten)",
    ),
    (
        "--verity-dir DIR",
        "trusted *.crt signing certificates, repeatable, earlier wins\n\
         (default: the initrd's verity.d directories and\n\
         ROOT/usr/lib/verity.d, else ROOT's verity.d directories)",
    ),
    ("--confext", "judge the images as confext (verify)"),
    ("--json", "JSON output for list, status and verify"),
    ("--debug", "verbose logging"),
    ("-h, --help", "show help (of the command, after one)"),
    ("--version", "show rdext's version"),
];

/// `text` with every line after the first indented by `indent` columns.
fn hanging(text: &str, indent: usize) -> String {
    text.replace('\n', &format!("\n{:indent$}", ""))
}

fn option_lines<'a>(options: impl Iterator<Item = &'a (&'a str, &'a str)>) -> String {
    options
        .map(|(name, what)| format!("  {name:<20}{}\n", hanging(what, 22)))
        .collect()
}

/// The overview `rdext --help` and `rdext help` print.
fn usage() -> String {
    let commands: String = COMMANDS
        .iter()
        .map(|(name, _, what)| format!("  {name:<10}{}\n", hanging(what, 12)))
        .collect();
    format!(
        "usage: rdext COMMAND [OPTIONS]\n\ncommands:\n{commands}\noptions:\n{}\n\
         `rdext help COMMAND` shows one command; man rdext has the reference.\n",
        option_lines(OPTIONS.iter())
    )
}

/// `rdext help COMMAND` and `rdext COMMAND --help`: the synopsis, what it
/// does and the options that apply to it.
fn command_help(command: &str) -> Option<String> {
    let (name, synopsis, what) = COMMANDS.iter().find(|(name, ..)| *name == command)?;
    let applies = OPTIONS.iter().filter(|(option, _)| {
        let flag = option.split(' ').next().unwrap_or(option);
        synopsis.split(['[', ']', ' ']).any(|word| word == flag)
    });
    Some(format!(
        "usage: rdext {name} {synopsis}\n\n  {}\n\noptions:\n{}",
        hanging(what, 2),
        option_lines(applies)
    ))
}

#[derive(Debug, Default)]
struct Args {
    command: String,
    operands: Vec<PathBuf>,
    confext: bool,
    root: Option<PathBuf>,
    initrd_root: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    cmdline: Option<PathBuf>,
    modules_dir: Option<PathBuf>,
    config: Vec<PathBuf>,
    verity_dirs: Vec<PathBuf>,
    strict: bool,
    mutable: Option<String>,
    always: bool,
    json: bool,
    debug: bool,
    help: bool,
}

fn parse_args() -> Result<Args> {
    use lexopt::prelude::*;
    let mut args = Args::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("root") => args.root = Some(parser.value()?.into()),
            Long("initrd-root") => args.initrd_root = Some(parser.value()?.into()),
            Long("run-dir") => args.run_dir = Some(parser.value()?.into()),
            Long("cmdline") => args.cmdline = Some(parser.value()?.into()),
            Long("modules-dir") => args.modules_dir = Some(parser.value()?.into()),
            Long("config") => args.config.push(parser.value()?.into()),
            Long("verity-dir") => args.verity_dirs.push(parser.value()?.into()),
            Long("strict") => args.strict = true,
            Long("mutable") => args.mutable = Some(parser.value()?.string()?),
            Long("always") => args.always = true,
            Long("json") => args.json = true,
            Long("debug") => args.debug = true,
            Short('h') | Long("help") => args.help = true,
            Long("version") => {
                println!("rdext {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            Long("confext") => args.confext = true,
            Value(v) if args.command.is_empty() => args.command = v.string()?,
            Value(v) if matches!(args.command.as_str(), "verify" | "help") => {
                args.operands.push(v.into())
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if args.command == "help" {
        args.help = true;
        args.command = match args.operands.as_slice() {
            [] => String::new(),
            [topic] => topic.to_string_lossy().into_owned(),
            _ => bail!("help takes one command"),
        };
    }
    if args.help {
        let help = match args.command.as_str() {
            "" => usage(),
            command => command_help(command)
                .with_context(|| format!("unknown command {command:?}\n{}", usage()))?,
        };
        print!("{help}");
        std::process::exit(0);
    }
    if args.command.is_empty() {
        bail!("no command given\n{}", usage());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("rdext: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<MergeError>() {
            Some(MergeError::RequiredMissing(_)) => {
                log::error!("{e}; the boot cannot continue");
                ExitCode::from(REQUIRED_MISSING)
            }
            _ => {
                log::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// How long the initrd waits for the device of a separate /var to appear.
const VAR_DEVICE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a merge-only build (`--no-default-features`) does not download.
#[cfg(not(feature = "download"))]
const NO_DOWNLOADS: &str = "downloads are not built into this rdext (merge-only build)";

/// Exit status telling the initrd integration to stop the boot.
const REQUIRED_MISSING: u8 = 3;

fn run(args: Args) -> Result<()> {
    // systemd initrds have /etc/initrd-release; others may only have the
    // file under /usr/lib.
    let in_initrd = ["/etc/initrd-release", "/usr/lib/initrd-release"]
        .iter()
        .any(|p| Path::new(p).exists());
    let cmdline_path = args
        .cmdline
        .clone()
        .unwrap_or_else(|| "/proc/cmdline".into());
    let cmdline = match std::fs::read_to_string(&cmdline_path) {
        Ok(text) => KernelCmdline::parse(&text),
        Err(e) if args.cmdline.is_some() => {
            return Err(e).with_context(|| format!("cannot read {}", cmdline_path.display()))
        }
        Err(_) => KernelCmdline::parse(""),
    };
    let debug = args.debug || cmdline_flag(&cmdline, "rdext.debug").unwrap_or(false);
    rdext::logger::init(debug, in_initrd);

    let root: PathBuf = args
        .root
        .clone()
        .unwrap_or_else(|| if in_initrd { "/sysroot" } else { "/" }.into());
    // With an initrd root, rdext judges as the initrd: its own files are
    // trusted and the target root's writable ones may only tighten.
    let initrd_root = args
        .initrd_root
        .clone()
        .or_else(|| in_initrd.then(|| "/".into()));
    let settings = load_settings(&args.config, &root, initrd_root.as_deref(), cmdline);
    let opts = Options {
        root: root.clone(),
        initrd_root: initrd_root.clone(),
        classes: Class::ALL.to_vec(),
        strict: args.strict,
        run_dir: args.run_dir.clone().unwrap_or_else(|| "/run".into()),
        host_arch: host_arch()?,
        modules_dir: Some(args.modules_dir.clone().unwrap_or_else(|| {
            let release = rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned();
            Path::new("/lib/modules").join(release)
        })),
        required: required_names(&settings),
        mutable: mutable_mode(args.mutable.as_deref(), &settings)?,
        cmdline: settings.cmdline().clone(),
        policy: policy_choice(settings.first_of(&POLICY_KEYS)),
        target_policy: settings
            .target_first_of(&POLICY_KEYS)
            .map(|found| policy_choice(Some(found))),
        verity_dirs: if args.verity_dirs.is_empty() {
            let trust_root_etc = setting_flag(&settings, "trust_root_etc").unwrap_or(false);
            verity_dirs(&root, initrd_root.as_deref(), trust_root_etc)
        } else {
            args.verity_dirs.clone()
        },
    };
    match args.command.as_str() {
        "merge" => merge_command(opts, &settings, None),
        "refresh" => merge_command(opts, &settings, Some(args.always)),
        #[cfg(feature = "download")]
        "download" => {
            let mode = download_mode(&settings, &opts.root, DownloadMode::Missing);
            download::run(&download_options(&opts, &settings, mode));
            run_pulls(&opts, &settings);
            Ok(())
        }
        #[cfg(not(feature = "download"))]
        "download" => bail!("{NO_DOWNLOADS}"),
        "list" => list_command(&opts, args.json),
        "verify" => verify_command(&opts, &args),
        "status" => status_command(&opts, args.json),
        "bless" => {
            let n = merge::bless(&opts.root, &opts.run_dir)?;
            if n == 0 {
                log::info!("no boot-counted extension to bless");
            }
            Ok(())
        }
        "unmerge" => {
            let removed = merge::unmerge(&opts.root, &opts.classes, &opts.run_dir)?;
            if removed == 0 {
                log::info!("nothing was merged");
            }
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{}", usage()),
    }
}

/// The settings: the `--config` files (default: the initrd's
/// `etc/rdext.conf` with an initrd root, else ROOT's), and with an initrd
/// root also ROOT's `etc/rdext.conf` as the lesser layer that may only
/// tighten.
fn load_settings(
    config: &[PathBuf],
    root: &Path,
    initrd_root: Option<&Path>,
    cmdline: KernelCmdline,
) -> Settings {
    let own_file = initrd_root.unwrap_or(root).join("etc/rdext.conf");
    let files = if config.is_empty() {
        vec![own_file.as_path()]
    } else {
        config.iter().map(PathBuf::as_path).collect()
    };
    let settings = Settings::load(cmdline, &files);
    match initrd_root {
        Some(_) => settings.with_target(&root.join("etc/rdext.conf")),
        None => settings,
    }
}

/// Where trusted signing certificates are. After boot: the system's
/// `verity.d` directories, as systemd reads them. With an initrd root:
/// the initrd's, then only the target's `usr/lib/verity.d`, which ships
/// with its (verity-protected) `/usr`; its writable `etc` only when the
/// initrd or the command line opts in (`trust_root_etc`), its `run` and
/// `usr/local` never.
fn verity_dirs(root: &Path, initrd_root: Option<&Path>, trust_root_etc: bool) -> Vec<PathBuf> {
    const SYSTEMD_DIRS: [&str; 4] = ["etc", "run", "usr/local/lib", "usr/lib"];
    let under = |base: &Path, dirs: &[&str]| -> Vec<PathBuf> {
        dirs.iter().map(|d| base.join(d).join("verity.d")).collect()
    };
    let Some(initrd_root) = initrd_root else {
        return under(root, &SYSTEMD_DIRS);
    };
    let mut dirs = under(initrd_root, &SYSTEMD_DIRS);
    if trust_root_etc {
        dirs.extend(under(root, &["etc"]));
    }
    dirs.extend(under(root, &["usr/lib"]));
    dirs
}

/// The settings that choose the image policy; the first source setting
/// either decides, and there `image_policy` wins.
const POLICY_KEYS: [&str; 2] = ["image_policy", "policy"];

/// The image policy from `image_policy` (full grammar) or `policy` (one
/// word). A value that does not parse refuses every image: guessing would
/// mean a weaker policy than the one asked for.
fn policy_choice(found: Option<(&str, Setting)>) -> PolicyChoice {
    let Some((key, s)) = found else {
        return PolicyChoice::Default;
    };
    let parsed = if key == "image_policy" {
        ImagePolicy::parse(&s.value).map(PolicyChoice::Explicit)
    } else {
        policy::from_level(&s.value, true).map(|_| PolicyChoice::Level(s.value.clone()))
    };
    parsed.unwrap_or_else(|e| {
        log::error!(
            "{key}={} from {}: {e}; refusing all images",
            s.value,
            s.source
        );
        PolicyChoice::Explicit(ImagePolicy::deny())
    })
}

/// A boolean setting; a malformed value is reported and ignored.
fn setting_flag(settings: &Settings, key: &str) -> Option<bool> {
    let s = settings.get(key)?;
    let value = rdext::cmdline::parse_bool(&s.value);
    if value.is_none() {
        log::warn!(
            "ignoring {key}={} from {}: not a boolean",
            s.value,
            s.source
        );
    }
    value
}

/// A boolean switch from the command line; a malformed value is reported
/// and ignored rather than guessed.
fn cmdline_flag(cmdline: &KernelCmdline, key: &str) -> Option<bool> {
    match cmdline.get_bool(key)? {
        Ok(value) => Some(value),
        Err(e) => {
            eprintln!("rdext: ignoring {e}");
            None
        }
    }
}

/// `download` from the settings, else missing on first boot and no later;
/// at least `least`; the target root's file may only lower it.
#[cfg(feature = "download")]
fn download_mode(settings: &Settings, root: &Path, least: DownloadMode) -> DownloadMode {
    let parse = |s: Setting| {
        DownloadMode::parse(&s.value).unwrap_or_else(|| {
            log::error!(
                "download={} from {} is not missing, update or no; not downloading",
                s.value,
                s.source
            );
            DownloadMode::No
        })
    };
    let mode = match settings.get("download") {
        Some(s) => parse(s),
        None if download::first_boot(root, settings.cmdline()) => DownloadMode::Missing,
        None => DownloadMode::No,
    };
    let mode = mode.max(least);
    match settings.target("download") {
        Some(s) => mode.min(parse(s)),
        None => mode,
    }
}

#[cfg(feature = "download")]
fn download_options(opts: &Options, settings: &Settings, mode: DownloadMode) -> DownloadOptions {
    DownloadOptions {
        root: opts.root.clone(),
        mode,
        mirror: settings.get("mirror").map(|s| s.value),
        host_arch: opts.host_arch.clone(),
        pinned_ca: settings.get("download_ca").map(|s| PathBuf::from(s.value)),
        connect_timeout: std::time::Duration::from_secs(10),
        read_timeout: std::time::Duration::from_secs(30),
        retries: 3,
    }
}

/// A merge-only build cannot pull: say so once when pulls are asked for.
#[cfg(not(feature = "download"))]
fn run_pulls(_opts: &Options, settings: &Settings) {
    if !settings.cmdline().get_all("rdext.pull").is_empty()
        || !settings.file_values("pull").is_empty()
    {
        log::warn!("pull: {NO_DOWNLOADS}");
    }
}

/// The pulls of the command line and the settings files, run before the merge. In an initrd
/// `rd.systemd.pull=` counts too, unless the initrd has systemd's own import generator.
#[cfg(feature = "download")]
fn run_pulls(opts: &Options, settings: &Settings) {
    let cmdline = settings.cmdline();
    let own: Vec<String> = cmdline
        .get_all("rdext.pull")
        .into_iter()
        .map(str::to_string)
        .collect();
    let systemd_pulls: Vec<String> = match &opts.initrd_root {
        Some(initrd) => {
            let pulls = cmdline.get_all("rd.systemd.pull");
            let generator =
                initrd.join("usr/lib/systemd/system-generators/systemd-import-generator");
            if !pulls.is_empty() && generator.exists() {
                log::info!("leaving rd.systemd.pull= to systemd-import-generator in this initrd");
                Vec::new()
            } else {
                pulls.into_iter().map(str::to_string).collect()
            }
        }
        None => Vec::new(),
    };
    // In files, one `pull=` value holds whitespace-separated expressions.
    let from_files: Vec<(String, String)> = settings
        .file_values("pull")
        .into_iter()
        .flat_map(|s| {
            let source = s.source.to_string();
            s.value
                .split_whitespace()
                .map(|e| (e.to_string(), source.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let specs = pull::collect(&own, &systemd_pulls, &from_files);
    if specs.is_empty() {
        return;
    }
    let mut keyrings = Vec::new();
    if let Some(initrd) = &opts.initrd_root {
        keyrings.extend(rdext::fetch::manifest::keyring_path(initrd));
    }
    keyrings.extend(rdext::fetch::manifest::keyring_path(&opts.root));
    let auth_files = match settings.get("registry_auth") {
        Some(s) => vec![opts.root.join(s.value.trim_start_matches('/'))],
        None => vec![
            opts.root.join("etc/rdext/registry-auth.json"),
            opts.root.join("root/.docker/config.json"),
        ],
    };
    pull::run(
        &PullOptions {
            root: opts.root.clone(),
            run_dir: opts.run_dir.clone(),
            runtime_default: opts.initrd_root.is_some(),
            host_arch: opts.host_arch.clone(),
            pinned_ca: settings.get("download_ca").map(|s| PathBuf::from(s.value)),
            auth_files,
            keyrings,
            connect_timeout: std::time::Duration::from_secs(10),
            read_timeout: std::time::Duration::from_secs(30),
            retries: 3,
        },
        &specs,
    );
}

/// The mutable mode: the option, else `rdext.mutable=` or `mutable=` /
/// `Mutable=` in the settings, else no. A bad value on the command line of
/// rdext is an error; one in the settings is reported and read-only used.
fn mutable_mode(option: Option<&str>, settings: &Settings) -> Result<Mutable> {
    if let Some(value) = option {
        return Mutable::parse(value).with_context(|| {
            format!("--mutable={value}: not no, auto, yes, import, ephemeral or ephemeral-import")
        });
    }
    let Some(s) = settings.get("mutable").or_else(|| settings.get("Mutable")) else {
        return Ok(Mutable::No);
    };
    Ok(Mutable::parse(&s.value).unwrap_or_else(|| {
        log::error!(
            "mutable={} from {} is not a mutable mode; merging read-only",
            s.value,
            s.source
        );
        Mutable::No
    }))
}

/// `merge`, or `refresh` with its `--always`.
fn merge_command(mut opts: Options, settings: &Settings, refresh: Option<bool>) -> Result<()> {
    let cmdline = settings.cmdline();
    if cmdline_flag(cmdline, "rdext") == Some(false) {
        log::info!("disabled by rdext=0 on the kernel command line");
        return Ok(());
    }
    // In the initrd, a /var that only the booted system would mount is
    // mounted now, for the download and the merge (and stays mounted).
    if opts.initrd_root.is_some() {
        rdext::mount::var::mount_split_var(&opts.root, VAR_DEVICE_WAIT);
    }
    #[cfg(feature = "download")]
    {
        let mode = download_mode(settings, &opts.root, DownloadMode::No);
        if mode != DownloadMode::No {
            download::run(&download_options(&opts, settings, mode));
        }
    }
    #[cfg(not(feature = "download"))]
    if let Some(s) = settings.get("download") {
        if rdext::cmdline::parse_bool(&s.value) != Some(false) {
            log::warn!("download={} from {}: {NO_DOWNLOADS}", s.value, s.source);
        }
    }
    run_pulls(&opts, settings);
    for (class, key) in [
        (Class::Sysext, "systemd.sysext"),
        (Class::Confext, "systemd.confext"),
    ] {
        if cmdline_flag(cmdline, key) == Some(false) {
            log::info!(
                "{} disabled by {key}=0 on the kernel command line",
                class.name()
            );
            opts.classes.retain(|c| *c != class);
        }
    }
    // A bare `rdext.required` (or a true value): every extension is
    // required, so any image that does not merge stops the boot.
    let require_all = required_settings(settings)
        .iter()
        .any(|s| rdext::cmdline::parse_bool(&s.value) == Some(true));
    opts.strict |= require_all;
    let result = match refresh {
        Some(always) => merge::refresh(&opts, always),
        None => merge::merge(&opts),
    };
    match result {
        Err(MergeError::Other(e)) if require_all => {
            Err(MergeError::RequiredMissing(vec![format!(
                "every extension (rdext.required): {e:#}"
            )])
            .into())
        }
        other => other.map(drop).map_err(Into::into),
    }
}

/// `required` from the trusted sources and from the target root's file,
/// which can add to it but not take away.
fn required_settings(settings: &Settings) -> Vec<Setting> {
    [settings.get("required"), settings.target("required")]
        .into_iter()
        .flatten()
        .collect()
}

/// Names from `required`, unless it is a boolean (see `merge_command`).
fn required_names(settings: &Settings) -> Vec<String> {
    let mut names = Vec::new();
    for s in required_settings(settings) {
        if rdext::cmdline::parse_bool(&s.value).is_none() {
            for name in s.words() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

fn list_command(opts: &Options, json: bool) -> Result<()> {
    let reports = merge::list(opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for r in reports {
        let (verdict, reason) = match &r.verdict {
            Verdict::Accepted => ("accepted", String::new()),
            Verdict::Rejected(reason) => ("rejected", reason.clone()),
            Verdict::Masked => ("masked", "empty directory".to_string()),
            Verdict::Shadowed(by) => ("shadowed", format!("by {}", by.display())),
            Verdict::Ignored(reason) => ("ignored", reason.clone()),
        };
        let name = r.name.as_deref().unwrap_or("-");
        let reason = if reason.is_empty() {
            reason
        } else {
            format!(": {reason}")
        };
        println!(
            "{:<8} {:<20} {:<9} {}{reason}",
            r.class,
            name,
            verdict,
            r.display_entry()
        );
    }
    Ok(())
}

fn verify_command(opts: &Options, args: &Args) -> Result<()> {
    if args.operands.is_empty() {
        bail!("verify needs an image path");
    }
    let class = if args.confext {
        Class::Confext
    } else {
        Class::Sysext
    };
    let mut all_accepted = true;
    for image in &args.operands {
        let report = merge::verify(opts, class, image)?;
        all_accepted &= report.accepted;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            continue;
        }
        println!("image:      {}", report.image.display());
        println!("kind:       {}", report.kind);
        for (name, offset, size) in &report.partitions {
            println!("partition:  {name} at {offset}, {size} bytes");
        }
        let hash = report.root_hash.as_deref().unwrap_or("none");
        let source = report
            .root_hash_source
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        println!("root hash:  {hash}{source}");
        println!(
            "signature:  {}",
            if report.signed { "present" } else { "none" }
        );
        println!("policy:     {}", report.policy);
        let word = if report.accepted {
            "accepted"
        } else {
            "refused"
        };
        println!("verdict:    {word}: {}", report.verdict);
    }
    if !all_accepted {
        bail!("refused by the policy");
    }
    Ok(())
}

fn status_command(opts: &Options, json: bool) -> Result<()> {
    let rows = merge::status(&opts.root, &opts.classes);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<10} {:<40} SINCE", "HIERARCHY", "EXTENSIONS");
    for row in rows {
        let extensions = match &row.extensions {
            serde_json::Value::Array(names) => names
                .iter()
                .filter_map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            other => other.as_str().unwrap_or("none").to_string(),
        };
        let since = row
            .since
            .map_or("-".to_string(), |us| format!("{}", us / 1_000_000));
        println!("{:<10} {:<40} {since}", row.hierarchy, extensions);
    }
    Ok(())
}

/// The running kernel's architecture in systemd's notation.
fn host_arch() -> Result<String> {
    let uname = rustix::system::uname();
    let machine = uname.machine().to_string_lossy();
    match rdext::find::release::systemd_arch(&machine) {
        Some(arch) => Ok(arch.to_string()),
        None => bail!("unknown architecture {machine}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_in_a_synopsis_is_explained() {
        let known: Vec<&str> = OPTIONS
            .iter()
            .flat_map(|(option, _)| option.split([' ', ',']))
            .collect();
        for (name, synopsis, _) in COMMANDS {
            for flag in synopsis
                .split(['[', ']', ' '])
                .filter(|w| w.starts_with('-'))
            {
                assert!(known.contains(&flag), "{name}: {flag} has no help line");
            }
            let help = command_help(name).unwrap();
            assert!(help.starts_with(&format!("usage: rdext {name} ")), "{help}");
        }
        assert!(command_help("nope").is_none());
    }

    #[test]
    fn command_help_lists_only_its_options() {
        let help = command_help("status").unwrap();
        assert!(help.contains("  --root DIR ") && help.contains("  --json "));
        assert!(!help.contains("--strict") && !help.contains("--run-dir"));
    }
}
