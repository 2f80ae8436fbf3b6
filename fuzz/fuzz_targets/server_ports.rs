//! `proxy.config.http.server_ports` parsing never panics, and what it accepts renders
//! back to a string that parses to the same ports.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ports) = config::parse_server_ports(text) {
        let rendered = config::format_server_ports(&ports);
        let again = config::parse_server_ports(&rendered).expect("rendered ports parse");
        assert_eq!(ports, again, "round trip of {text:?} via {rendered:?}");
    }
});
