#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering;

use rdext::find::version::compare;

// systemd's version comparison is a total order: reflexive, antisymmetric
// and transitive on any three strings.
fuzz_target!(|data: &[u8]| {
    let [a, b, c] = rdext_fuzz::split::<3>(data);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (a, b, c) = (text(a), text(b), text(c));
    assert_eq!(compare(&a, &a), Ordering::Equal);
    assert_eq!(compare(&a, &b), compare(&b, &a).reverse(), "{a:?} {b:?}");
    let (ab, bc) = (compare(&a, &b), compare(&b, &c));
    if ab == bc || bc == Ordering::Equal {
        assert_eq!(compare(&a, &c), ab, "{a:?} {b:?} {c:?}");
    } else if ab == Ordering::Equal {
        assert_eq!(compare(&a, &c), bc, "{a:?} {b:?} {c:?}");
    }
});
