#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::cmdline::KernelCmdline;
use rdext::config::Settings;

// The kernel command line and an rdext.conf: every lookup rdext makes.
fuzz_target!(|data: &[u8]| {
    let [cmdline, conf] = rdext_fuzz::split::<2>(data);
    let cmdline = KernelCmdline::parse(&String::from_utf8_lossy(cmdline));
    for key in [
        "rdext",
        "rdext.required",
        "rdext.policy",
        "systemd.sysext",
        "rdext.debug",
    ] {
        let _ = cmdline.get(key);
        let _ = cmdline.get_bool(key);
    }
    let _ = cmdline.module_options("dm_verity");
    let settings = Settings::from_contents(cmdline, &[("rdext.conf", conf)]);
    for key in ["required", "policy", "download", "mirror", "image_policy"] {
        let _ = settings.get(key);
        assert!(settings
            .list(key)
            .iter()
            .all(|w| !w.is_empty() && !w.contains(',')));
    }
});
