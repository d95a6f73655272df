//! rdext's version order against systemd's own, `systemd-analyze
//! compare-versions` (systemd 252 and later), on generated pairs over the
//! characters the algorithm treats specially.

use std::cmp::Ordering;
use std::process::Command;

use rdext::find::version::compare;

/// What systemd says about `a` and `b` (its exit status: 0 equal, 11
/// newer, 12 older).
fn systemd(a: &str, b: &str) -> Ordering {
    let status = Command::new("systemd-analyze")
        .args(["compare-versions", "--", a, b])
        .output()
        .expect("systemd-analyze (systemd 252 or later) is needed")
        .status
        .code();
    match status {
        Some(0) => Ordering::Equal,
        Some(11) => Ordering::Greater,
        Some(12) => Ordering::Less,
        other => panic!("systemd-analyze compare-versions {a:?} {b:?}: {other:?}"),
    }
}

#[test]
fn agrees_with_systemd_analyze_compare_versions() {
    const ALPHABET: &[u8] = b"0001239aAbzZ.-~^_+";
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let word = |next: &mut dyn FnMut() -> u64| -> String {
        let len = next() % 7;
        (0..len)
            .map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize]))
            .collect()
    };
    let pairs: Vec<(String, String)> = (0..1200)
        .map(|i| {
            let a = word(&mut next);
            // Every fourth pair shares a prefix, where the interesting cases are.
            let b = if i % 4 == 0 {
                format!("{a}{}", word(&mut next))
            } else {
                word(&mut next)
            };
            (a, b)
        })
        .collect();
    // A process per pair: spread over a few threads.
    let disagreements: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .chunks(pairs.len() / 4)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(a, b)| {
                            let (ours, theirs) = (compare(a, b), systemd(a, b));
                            (ours != theirs).then(|| {
                                format!("{a:?} vs {b:?}: rdext {ours:?}, systemd {theirs:?}")
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let pairs = pairs.len();
    assert!(
        disagreements.is_empty(),
        "{} of {pairs} pairs disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
