//! The front door of the built binary, without root: version, help and usage errors.

use std::process::Command;

fn rdext(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rdext"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn version_prints_the_package_version() {
    let (status, stdout, _) = rdext(&["--version"]);
    assert_eq!(status, 0);
    assert_eq!(stdout, format!("rdext {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_for_a_command_either_way() {
    let (status, by_command, _) = rdext(&["help", "verify"]);
    assert_eq!(status, 0);
    assert!(
        by_command.starts_with("usage: rdext verify [--confext]"),
        "{by_command}"
    );
    assert!(by_command.contains("--verity-dir DIR") && !by_command.contains("--strict"));
    let (status, by_flag, _) = rdext(&["verify", "--help"]);
    assert_eq!((status, &by_flag), (0, &by_command));
    let (status, overview, _) = rdext(&["help"]);
    assert_eq!(status, 0);
    assert!(overview.starts_with("usage: rdext COMMAND [OPTIONS]"));
    assert_eq!(rdext(&["--help"]).1, overview);
}

#[test]
fn usage_errors_exit_2_with_one_reason_first() {
    for (args, reason) in [
        (&["help", "nope"][..], "rdext: unknown command \"nope\""),
        (&["nope", "--help"], "rdext: unknown command \"nope\""),
        (&[], "rdext: no command given"),
        (&["merge", "--bogus"], "rdext: invalid option '--bogus'"),
    ] {
        let (status, stdout, stderr) = rdext(args);
        assert_eq!(status, 2, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().next(), Some(reason), "{args:?}");
    }
}
