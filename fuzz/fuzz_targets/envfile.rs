#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::class::Class;
use rdext::envfile::EnvFile;
use rdext::find::release::{self, HostRelease};

// os-release / extension-release / rdext.conf text: parsed as systemd does,
// then judged against a host, and as a host against a fixed extension.
fuzz_target!(|data: &[u8]| {
    let Ok(env) = EnvFile::parse(data) else {
        return;
    };
    let host = HostRelease::from_env(
        &EnvFile::parse("ID=debian\nVERSION_ID=12\nID_LIKE=ubuntu\nSYSEXT_LEVEL=1.0\n").unwrap(),
    )
    .unwrap();
    for class in [Class::Sysext, Class::Confext] {
        let _ = release::validate(class, &env, &host, "system", "x86-64");
        let _ = release::validate(class, &env, &host, "initrd", "arm64");
    }
    if let Ok(as_host) = HostRelease::from_env(&env) {
        let ext = EnvFile::parse("ID=_any\nSYSEXT_LEVEL=1.0\nCONFEXT_LEVEL=1\n").unwrap();
        let _ = release::validate(Class::Sysext, &ext, &as_host, "system", "x86-64");
        assert!(!as_host.id.is_empty());
    }
});
