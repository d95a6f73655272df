//! Boot counting of `.v/` entries with the built binary on real erofs images: a counted try is
//! recorded by renaming before the merge, an entry with no try left is passed over for the
//! previous version, and `rdext bless` removes the counter of what this boot merged.

mod common;

use common::{marked, Scratch};

/// Merge, print the merged version and the entries, unmerge.
const BOOT: &str = r#"
    $RDEXT merge --root $ROOT --run-dir $RUN
    echo "tool: $(cat $ROOT/usr/bin/tool)"
    echo "entries: $(ls $ROOT/var/lib/extensions/tool.raw.v | tr '\n' ' ')"
    echo "counted: $(jq -c .counted $RUN/rdext/sysext.json)"
    $RDEXT unmerge --root $ROOT --run-dir $RUN
"#;

#[test]
fn a_bad_version_is_tried_left_times_then_the_previous_one_merges() {
    let s = Scratch::new();
    s.tool_version("1", "tool_1.raw");
    s.tool_version("2", "tool_2+2.raw");
    let mut seen = Vec::new();
    for _ in 0..3 {
        // No bless between the boots: boot-complete.target was never reached.
        let run = s.in_namespace(BOOT);
        assert_eq!(run.status, 0);
        seen.push((
            marked(&run.stdout, "tool: ").concat(),
            marked(&run.stdout, "entries: ").concat(),
            marked(&run.stdout, "counted: ").concat(),
            run.stderr.contains("counting this boot's try"),
        ));
    }
    let row = |t: &str, e: &str, c: &str, log| (t.to_string(), e.to_string(), c.to_string(), log);
    assert_eq!(
        seen,
        [
            row(
                "2",
                "tool_1.raw tool_2+1-1.raw ",
                r#"["/var/lib/extensions/tool.raw.v/tool_2+1-1.raw"]"#,
                true
            ),
            row(
                "2",
                "tool_1.raw tool_2+0-2.raw ",
                r#"["/var/lib/extensions/tool.raw.v/tool_2+0-2.raw"]"#,
                true
            ),
            row("1", "tool_1.raw tool_2+0-2.raw ", "[]", false),
        ]
    );
}

#[test]
fn a_good_version_is_blessed_and_stays_picked() {
    let s = Scratch::new();
    s.tool_version("1", "tool_1.raw");
    s.tool_version("2", "tool_2+1.raw");
    // The booted system blesses while the merge's record is there (unmerge removes it).
    let run = s.in_namespace(&format!(
        "$RDEXT merge --root $ROOT --run-dir $RUN\n\
         echo \"tool: $(cat $ROOT/usr/bin/tool)\"\n\
         $RDEXT bless --root $ROOT --run-dir $RUN\n\
         echo \"blessed: $(ls $ROOT/var/lib/extensions/tool.raw.v | tr '\\n' ' ')\"\n\
         $RDEXT unmerge --root $ROOT --run-dir $RUN\n{BOOT}"
    ));
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "tool: "), ["2", "2"]);
    assert_eq!(marked(&run.stdout, "blessed: "), ["tool_1.raw tool_2.raw "]);
    assert_eq!(
        marked(&run.stdout, "counted: "),
        ["[]"],
        "a blessed entry is not counted again"
    );
    assert!(run.stderr.contains("blessed "), "{}", run.stderr);
}
