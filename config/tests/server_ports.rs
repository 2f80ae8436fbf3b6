//! `proxy.config.http.server_ports`: string form, array form, errors, round trip.

use std::net::IpAddr;

use config::{format_server_ports, parse, parse_server_ports, Family, PortKind, PortSpec};

#[test]
fn every_token_is_understood() {
    let ports = parse_server_ports(
        "8080 8080:ipv6 9000:blind:tunnel=[127.0.0.1:5432] 8081:accept_threads=4 \
         8082:ip-in=[::1] 8083:ip-in=127.0.0.1:ipv4 8084:fd=3 8085:periodic:accept_threads=0 8086:reuseport",
    )
    .unwrap();
    assert_eq!(ports.len(), 9);
    assert_eq!(ports[0], PortSpec::new(8080));
    assert_eq!(ports[1].family, Family::Ipv6);
    assert_eq!(ports[1].bind_addr().to_string(), "[::]:8080");
    assert_eq!(
        ports[2].kind,
        PortKind::Blind {
            tunnel: "127.0.0.1:5432".into()
        }
    );
    assert_eq!(ports[3].accept_threads, Some(4));
    assert_eq!(ports[4].family, Family::Ipv6, "ip-in sets the family");
    assert_eq!(ports[4].bind_addr().to_string(), "[::1]:8082");
    assert_eq!(ports[5].ip_in, Some("127.0.0.1".parse::<IpAddr>().unwrap()));
    assert_eq!(ports[6].fd, Some(3));
    assert!(ports[7].periodic && ports[7].accept_threads == Some(0));
    assert!(ports[8].reuseport);
}

#[test]
fn the_ssl_token_reads_in_both_forms_and_with_blind() {
    let ports = parse_server_ports("8443:ssl 9443:blind:tunnel=[127.0.0.1:5432]:ssl 8080").unwrap();
    assert!(ports[0].ssl && ports[0].kind == PortKind::Http);
    assert!(ports[1].ssl && matches!(ports[1].kind, PortKind::Blind { .. }));
    assert!(!ports[2].ssl);
    assert_eq!(
        format_server_ports(&ports),
        "8443:ssl 9443:blind:tunnel=[127.0.0.1:5432]:ssl 8080"
    );
    let cfg = parse(
        "[[proxy.config.http.server_ports]]\nport = 8443\nssl = true\n[[ssl_multicert]]\nssl_cert_name = \"a.pem\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap();
    assert!(cfg.http.server_ports[0].ssl);
}

#[test]
fn commas_and_extra_spaces_separate_descriptors() {
    let ports = parse_server_ports("  8080,8081 ,  8082  ").unwrap();
    let numbers: Vec<u16> = ports.iter().map(|p| p.port).collect();
    assert_eq!(numbers, [8080, 8081, 8082]);
}

#[test]
fn bracket_values_may_hold_colons_and_ipv6_tunnels() {
    let ports = parse_server_ports("9000:blind:tunnel=[[::1]:5432]").unwrap();
    assert_eq!(
        ports[0].kind,
        PortKind::Blind {
            tunnel: "[::1]:5432".into()
        }
    );
    assert_eq!(ports[0].to_string(), "9000:blind:tunnel=[[::1]:5432]");
}

#[test]
fn port_zero_is_ephemeral_and_never_a_duplicate() {
    let ports = parse_server_ports("0 0 0:ipv6").unwrap();
    assert!(ports.iter().all(|p| p.port == 0));
}

#[test]
fn duplicates_are_refused() {
    let err = parse_server_ports("8080 8081 8080:ipv4").unwrap_err();
    assert_eq!(
        err,
        r#"descriptor "8080" duplicates "8080" (same port, family and address)"#
    );
    assert!(
        parse_server_ports("8080 8080:ipv6 8080:ip-in=127.0.0.1").is_ok(),
        "different family or address"
    );
    assert!(parse_server_ports("8080:ip-in=[::1] 8080:ipv6:ip-in=[::1]").is_err());
}

#[test]
fn bad_descriptors_name_descriptor_and_token() {
    let cases = [
        ("8081:foo", r#"descriptor "8081:foo": unknown token "foo""#),
        ("8080:tls", r#"descriptor "8080:tls": unknown token "tls""#),
        (
            "8080:ssl:ssl",
            r#"descriptor "8080:ssl:ssl": token "ssl" conflicts with an earlier one"#,
        ),
        ("ipv6", r#"descriptor "ipv6": no port number"#),
        (
            "65536",
            r#"descriptor "65536": port "65536" is not in 0..=65535"#,
        ),
        ("80:81", r#"descriptor "80:81": second port number "81""#),
        ("80::ipv6", r#"descriptor "80::ipv6": empty token"#),
        (
            "80:ipv4:ipv6",
            r#"descriptor "80:ipv4:ipv6": token "ipv6" conflicts with an earlier one"#,
        ),
        (
            "80:ipv6=1",
            r#"descriptor "80:ipv6=1": token "ipv6=1": "ipv6" takes no value"#,
        ),
        (
            "80:fd",
            r#"descriptor "80:fd": token "fd" needs a value (fd=...)"#,
        ),
        (
            "80:blind",
            r#"descriptor "80:blind": a blind port needs tunnel=[HOST:PORT]"#,
        ),
        (
            "80:tunnel=[a:1]",
            r#"descriptor "80:tunnel=[a:1]": tunnel= is only for blind ports"#,
        ),
        (
            "80:ipv4:ip-in=[::1]",
            r#"descriptor "80:ipv4:ip-in=[::1]": ip-in address ::1 is not ipv4"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(parse_server_ports(input).unwrap_err(), want, "{input}");
    }
    for bad in [
        "",
        "   ",
        "80:ip-in=::1",
        "80:ip-in=[nope]",
        "80:fd=-1",
        "80:fd=x",
        "80:accept_threads=257",
        "80:periodic:accept_threads=2",
        "80:blind:tunnel=[nohost]",
        "80:blind:tunnel=[h:0]",
        "80:blind:tunnel=[h:x]",
        "80:blind:tunnel=127.0.0.1",
        "80:[",
        "80]",
    ] {
        assert!(parse_server_ports(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn file_errors_are_prefixed_with_the_record() {
    let err = parse(
        "[proxy.config.http]\nserver_ports = \"8080 8081:foo\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"records.toml:2: proxy.config.http.server_ports: descriptor "8081:foo": unknown token "foo""#
    );
}

#[test]
fn display_round_trips_every_token() {
    let s = "8080 8080:ipv6 9000:blind:tunnel=[127.0.0.1:5432] 8081:accept_threads=4 \
             8082:ipv6:ip-in=[::1] 8083:ip-in=127.0.0.1 8084:fd=3 8085:accept_threads=0:periodic \
             8086:reuseport 0:ipv6:ip-in=[fe80::1]:fd=7:blind:tunnel=[[::1]:1]:accept_threads=256:reuseport";
    let ports = parse_server_ports(s).unwrap();
    assert_eq!(format_server_ports(&ports), s);
    assert_eq!(
        parse_server_ports(&format_server_ports(&ports)).unwrap(),
        ports
    );
    // Defaults written out explicitly come back in the short form.
    assert_eq!(
        format_server_ports(&parse_server_ports("8080:ipv4").unwrap()),
        "8080"
    );
}

#[test]
fn array_of_tables_form_matches_string_form() {
    let text = r#"
[[proxy.config.http.server_ports]]
port = 8080

[[proxy.config.http.server_ports]]
port = 9000
family = "ipv6"
ip_in = "::1"
fd = 4
kind = "blind"
tunnel = "127.0.0.1:5432"
accept_threads = 2
reuseport = true

[[proxy.config.http.server_ports]]
port = 8085
periodic = true
"#;
    let cfg = parse(text, "records.toml", &|_| None).unwrap();
    let want = parse_server_ports(
        "8080 9000:ipv6:ip-in=[::1]:fd=4:blind:tunnel=[127.0.0.1:5432]:accept_threads=2:reuseport 8085:periodic",
    )
    .unwrap();
    assert_eq!(cfg.http.server_ports, want);
}

#[test]
fn array_form_errors_carry_lines_and_entries() {
    let text = "[proxy.config.http]\nserver_ports = [\n  { port = 80, family = \"ipx\" },\n  { port = 81, colour = 1 },\n  { family = \"ipv6\" },\n]\n";
    let err = parse(text, "records.toml", &|_| None).unwrap_err();
    let msgs: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
    // Inline tables: the lines are those of the record's key.
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs[0].contains("entry 1: family: expected \"ipv4\" or \"ipv6\", got \"ipx\""),
        "{msgs:#?}"
    );
    assert!(
        msgs[1].contains("entry 2: colour: unknown field"),
        "{msgs:#?}"
    );
    assert!(msgs[2].contains("entry 3: no port number"), "{msgs:#?}");
    let dup = "[[proxy.config.http.server_ports]]\nport = 80\n[[proxy.config.http.server_ports]]\nport = 80\n";
    assert!(parse(dup, "records.toml", &|_| None)
        .unwrap_err()
        .to_string()
        .contains("duplicates"));
    let empty = "[proxy.config.http]\nserver_ports = []\n";
    assert!(parse(empty, "records.toml", &|_| None)
        .unwrap_err()
        .to_string()
        .contains("no ports given"));
    let number = "[proxy.config.http]\nserver_ports = 8080\n";
    assert!(parse(number, "records.toml", &|_| None)
        .unwrap_err()
        .to_string()
        .contains("expected a descriptor string"));
}

#[test]
fn array_form_lines_point_at_the_bad_key() {
    let text = "[[proxy.config.http.server_ports]]\nport = 80\n\n[[proxy.config.http.server_ports]]\nport = 81\nkind = \"udp\"\n";
    let err = parse(text, "records.toml", &|_| None).unwrap_err();
    assert_eq!(err.0[0].line, Some(6), "{err}");
}

#[test]
fn per_port_accept_threads_overrides_the_global_record() {
    let cfg = parse(
        "[proxy.config]\naccept_threads = 2\n[proxy.config.http]\nserver_ports = \"80 81:accept_threads=0\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap();
    let ports = &cfg.http.server_ports;
    assert_eq!(
        (
            cfg.accept_threads_for(&ports[0]),
            cfg.accept_threads_for(&ports[1])
        ),
        (2, 0)
    );
}

#[test]
fn a_blind_port_that_tunnels_to_itself_is_refused() {
    for ports in [
        "9000:blind:tunnel=[127.0.0.1:9000]",
        "9000:blind:tunnel=[localhost:9000]",
        "9000:blind:tunnel=[[::1]:9000]",
        "9000:blind:tunnel=[0.0.0.0:9000]",
        "9000:ip-in=127.0.0.2:blind:tunnel=[127.0.0.2:9000]",
    ] {
        let err = parse_server_ports(ports).unwrap_err();
        assert!(err.contains("is this port itself"), "{ports}: {err}");
    }
    for ports in [
        "9000:blind:tunnel=[127.0.0.1:9001]",
        "9000:ip-in=127.0.0.2:blind:tunnel=[127.0.0.1:9000]",
        "0:blind:tunnel=[127.0.0.1:0]",
        "9000:blind:tunnel=[db:9000]",
    ] {
        // (port 0 is refused as a tunnel port on its own.)
        let r = parse_server_ports(ports);
        assert!(
            r.as_ref().map_or_else(|e| !e.contains("itself"), |_| true),
            "{ports}: {r:?}"
        );
    }
}
