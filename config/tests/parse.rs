//! records.toml parsing: defaults, file errors with lines, several errors at once.

use config::{parse, Config, ConfigErrors, DEFAULT_RECORDS, EMBEDDED_ORIGIN};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_file(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, "records.toml", &no_env)
}

fn errors(text: &str) -> Vec<String> {
    parse_file(text)
        .expect_err("should be refused")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn embedded_default_parses_to_config_default() {
    let cfg = parse(DEFAULT_RECORDS, EMBEDDED_ORIGIN, &no_env).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn embedded_default_is_the_workspace_records_toml() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../records.toml");
    assert_eq!(std::fs::read_to_string(path).unwrap(), DEFAULT_RECORDS);
}

#[test]
fn default_file_lists_every_record_with_a_comment_above_it() {
    let lines: Vec<&str> = DEFAULT_RECORDS.lines().collect();
    // Top-level arrays of tables ([[remap]], [[ssl_multicert]]) are shown commented out.
    for name in config::record_names().filter(|n| n.starts_with("proxy.")) {
        let key = name.rsplit('.').next().unwrap();
        let at = lines
            .iter()
            .position(|l| {
                let l = l.trim_start();
                l.split('=')
                    .next()
                    .map(str::trim)
                    .is_some_and(|k| k.ends_with(key))
                    && !l.starts_with('#')
            })
            .unwrap_or_else(|| panic!("{name} is missing from records.toml"));
        assert!(
            lines[at - 1].starts_with('#'),
            "{name} has no comment above it"
        );
    }
    assert!(DEFAULT_RECORDS.contains("# [[remap]]"));
    assert!(DEFAULT_RECORDS.contains("# [[ssl_multicert]]"));
    assert!(DEFAULT_RECORDS.contains("#   { path = "));
}

#[test]
fn empty_file_is_all_defaults() {
    let cfg = parse_file("").unwrap();
    assert_eq!(
        Config {
            origin: EMBEDDED_ORIGIN.into(),
            ..cfg
        },
        Config::default()
    );
}

#[test]
fn values_land_in_their_fields() {
    let cfg = parse_file(
        r#"
[proxy.config]
accept_threads = 0
[proxy.config.net]
accept_period = 25
sock_options_in = ["keepalive", "linger0"]
sock_recv_buffer_size_in = "64K"
[proxy.config.exec_thread.autoconfig]
scale = 2
[proxy.config.http]
server_ports = "0 0:ipv6"
wait_for_cache = 2
[proxy.config.cache]
storage = [{ path = "/tmp/span", size = "1G" }]
ram_cache.size = 1048576
[proxy.config.stats]
allow_ip = ["10.0.0.0/8"]
[[remap]]
from = "/"
to = "http://127.0.0.1:9000/"
"#,
    )
    .unwrap();
    assert_eq!(cfg.accept_threads, 0);
    assert_eq!(cfg.net.accept_period_ms, 25);
    assert!(!cfg.net.sock_options_in.nodelay && cfg.net.sock_options_in.keepalive);
    assert_eq!(cfg.net.sock_recv_buffer_size_in, 65536);
    assert_eq!(cfg.exec_thread.autoconfig_scale, 2.0);
    assert_eq!(cfg.http.server_ports.len(), 2);
    assert_eq!(
        cfg.http.wait_for_cache,
        config::WaitForCache::WaitRequireAny
    );
    assert_eq!(cfg.cache.storage[0].size, 1 << 30);
    assert_eq!(cfg.cache.ram_cache_size, 1 << 20);
    assert!(cfg.stats.allows(&"10.2.3.4".parse().unwrap()));
    assert!(!cfg.stats.allows(&"127.0.0.1".parse().unwrap()));
    assert_eq!(cfg.remap[0].to.port_or_default(), 9000);
    assert_eq!(cfg.remap[0].from.host, None);
}

#[test]
fn unknown_key_names_full_record_and_line() {
    let errs = errors("# comment\n[proxy.config.net]\naccept_period = 10\naccept_perod = 5\n");
    assert_eq!(
        errs,
        ["records.toml:4: proxy.config.net.accept_perod: unknown record; did you mean proxy.config.net.accept_period?"]
    );
}

#[test]
fn unknown_table_is_one_error() {
    let errs = errors("[proxy.config.nett]\na = 1\nb = 2\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("records.toml:1: proxy.config.nett: unknown record"),
        "{errs:?}"
    );
}

#[test]
fn wrong_type_names_record_line_and_value() {
    let errs = errors("[proxy.config.http]\ncache.http = \"yes\"\n");
    assert_eq!(
        errs,
        [r#"records.toml:2: proxy.config.http.cache.http: expected true or false, got "yes""#]
    );
    let errs = errors("[proxy.config]\naccept_threads = 1.5\n");
    assert!(errs[0].contains("proxy.config.accept_threads: expected a whole number of threads from 0 to 256, got 1.5"), "{errs:?}");
}

#[test]
fn out_of_range_names_record_line_and_value() {
    let errs = errors("[proxy.config.net]\n\naccept_period = -5\n");
    assert_eq!(
        errs,
        ["records.toml:3: proxy.config.net.accept_period: expected a whole number of milliseconds from 1 to 60000, got -5"]
    );
    for bad in [
        "[proxy.config]\naccept_threads = 257",
        "[proxy.config.exec_thread]\nautoconfig.scale = 0.0",
        "[proxy.config.exec_thread]\nautoconfig.scale = 64.5",
        "[proxy.config.exec_thread]\nlimit = 0",
        "[proxy.config.exec_thread]\naffinity = \"all\"",
        "[proxy.config.net]\nadditional_accepts = -2",
        "[proxy.config.net]\nthrottle_delay = 60001",
        "[proxy.config.net]\naccept_coalesce = 10001",
        "[proxy.config.net]\naccept_coalesce = -1",
        "[proxy.config.net]\ndefer_accept = 3601",
        "[proxy.config.net]\nconnections_throttle = -1",
        "[proxy.config.net]\nthrottle_mode = \"drop\"",
        "[proxy.config.net]\nsock_options_in = [\"nodelay\", \"cork\"]",
        "[proxy.config.net]\nsock_send_buffer_size_in = \"4G\"",
        "[proxy.config.net]\ndefault_inactivity_timeout = 0",
        "[proxy.config.http]\nrequest_header_max_size = 1023",
        "[proxy.config.http]\nrequest_header_max_size = \"17M\"",
        "[proxy.config.http]\nwait_for_cache = 4",
        "[proxy.config.http]\nkeep_alive_no_activity_timeout_in = 0",
        "[proxy.config.http]\nserver_ports = \"\"",
        "[proxy.config.http]\nconnect_ports = \"443 https\"",
        "[proxy.config.http]\nconnect_ports = 443",
        "[proxy.config.cache]\nlimits.http.max_alts = -1",
        "[proxy.config.cache]\nram_cache.size = \"1.5G\"",
        "[proxy.config.cache]\nstorage = [{ path = \"/a\", size = \"0\" }]",
        "[proxy.config.cache]\nstorage = [{ path = \"/a\" }]",
        "[proxy.config.cache]\nstorage = [{ path = \"/a\", size = \"1M\" }, { path = \"/a\", size = \"2M\" }]",
        "[proxy.config.stats]\npath = \"_stats\"",
        "[proxy.config.stats]\nallow_ip = [\"10.0.0.0/33\"]",
        "[proxy.config.admin]\nsocket = \"\"",
        "[proxy.config.stop]\nshutdown_timeout = -1",
        "[proxy.config.stop]\nshutdown_timeout = 99999999999",
        "[[remap]]\nfrom = \"https://a/\"\nto = \"http://b/\"",
        "[[remap]]\nfrom = \"/\"\nto = \"/\"",
        "[[remap]]\nfrom = \"/\"",
        "[[remap]]\nfrom = \"/\"\nto = \"http://b/\"\n[[remap]]\nfrom = \"/\"\nto = \"http://c/\"",
    ] {
        let errs = errors(bad);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("records.toml:"), "{bad}: {errs:?}");
    }
}

#[test]
fn a_share_is_a_number_from_0_to_1_both_included() {
    let errs = errors("[proxy.config.http]\nbackground_fill_completed_threshold = -0.1\n");
    assert_eq!(
        errs,
        ["records.toml:2: proxy.config.http.background_fill_completed_threshold: expected a number ≥ 0 and ≤ 1, got -0.1"]
    );
    assert_eq!(
        errors("[proxy.config.http]\nbackground_fill_completed_threshold = 1.01\n").len(),
        1
    );
    for (text, share) in [("0", 0.0), ("0.0", 0.0), ("0.5", 0.5), ("1", 1.0)] {
        let cfg = parse_file(&format!(
            "[proxy.config.http]\nbackground_fill_completed_threshold = {text}\n"
        ))
        .unwrap();
        assert_eq!(cfg.http.background_fill_threshold, share, "{text}");
    }
    // The lower bound of the other numbers stays out.
    assert_eq!(
        errors("[proxy.config.http]\ncache.heuristic_lm_factor = 0\n"),
        ["records.toml:2: proxy.config.http.cache.heuristic_lm_factor: expected a number > 0 and ≤ 1, got 0"]
    );
}

#[test]
fn a_stats_path_ending_with_a_slash_is_refused_naming_the_record() {
    for bad in ["/_stats/", "/"] {
        let errs = errors(&format!("[proxy.config.stats]\npath = {bad:?}\n"));
        assert_eq!(
            errs,
            [format!("records.toml:2: proxy.config.stats.path: expected a path not ending with \"/\" (the formats are PATH/csv, PATH/prometheus), got {bad:?}")]
        );
    }
    let cfg = parse_file("[proxy.config.stats]\npath = \"/a/_stats\"\n").unwrap();
    assert_eq!(cfg.stats.path, "/a/_stats");
}

#[test]
fn connect_ports_errors_name_the_record_and_the_item() {
    let errs = errors("[proxy.config.http]\nconnect_ports = \"443 8000-70000\"\n");
    assert_eq!(
        errs,
        ["records.toml:2: proxy.config.http.connect_ports: \"70000\" is not a port (0..=65535)"]
    );
}

#[test]
fn every_error_in_a_file_is_reported() {
    let errs = errors(
        "[proxy.config]\naccept_threads = -1\nbogus = 1\n[proxy.config.net]\naccept_period = 0\nthrottle_mode = 3\n[proxy.config.stats]\nallow_ip = [\"x\", \"127.0.0.1\", \"y\"]\n",
    );
    let lines: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "records.toml:2",
            "records.toml:3",
            "records.toml:5",
            "records.toml:6",
            "records.toml:8",
            "records.toml:8"
        ],
        "{errs:#?}"
    );
}

#[test]
fn errors_inside_arrays_of_tables_carry_their_own_lines() {
    let errs = errors(
        "[[remap]]\nfrom = \"/\"\nto = \"http://a/\"\n\n[[remap]]\nfrom = \"/x\"\nto = \"ftp://a/\"\nextra = 1\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("records.toml:7: remap: entry 2: to: expected an http:// or https:// URL"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("records.toml:8: remap: entry 2: extra: unknown field"),
        "{errs:?}"
    );
}

#[test]
fn a_duplicate_is_reported_at_its_own_line() {
    let errs = errors(
        "[[remap]]\nfrom = \"http://a/\"\nto = \"http://127.0.0.1:9/\"\n\n\
         [[remap]]\nto = \"http://127.0.0.1:8/\"\nfrom = \"http://a/\"\n",
    );
    assert_eq!(
        errs,
        ["records.toml:7: remap: entry 2: from \"http://a/\" is already mapped by entry 1"]
    );
    let errs = errors(
        "[proxy.config.cache]\nstorage = [\n  { path = \"/a\", size = \"1M\" },\n  \
         { path = \"/a\", size = \"2M\" },\n]\n",
    );
    assert_eq!(
        errs,
        ["records.toml:4: proxy.config.cache.storage: entry 2: path \"/a\" is already span 1"]
    );
}

#[test]
fn limits_the_daemon_would_refuse_are_configuration_errors() {
    let long = format!("/tmp/{}.sock", "x".repeat(config::MAX_SOCKET_PATH_LEN));
    let errs = errors(&format!("[proxy.config.admin]\nsocket = {long:?}\n"));
    assert_eq!(
        errs,
        [format!(
            "records.toml:2: proxy.config.admin.socket: a socket path is at most 107 bytes (sun_path), got {} bytes",
            long.len()
        )]
    );
    let longest = "x".repeat(config::MAX_SOCKET_PATH_LEN);
    let cfg = parse_file(&format!("[proxy.config.admin]\nsocket = {longest:?}\n")).unwrap();
    assert_eq!(cfg.admin.socket.as_os_str().len(), 107);

    for small in ["\"1K\"", "1048575"] {
        let errs = errors(&format!(
            "[proxy.config.cache]\nstorage = [{{ path = \"/a\", size = {small} }}]\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("records.toml:2: proxy.config.cache.storage: entry 1: size: a span needs a size ≥ 1M (1048576 bytes)"),
            "{errs:?}"
        );
    }
    let cfg = parse_file("[proxy.config.cache]\nstorage = [{ path = \"/a\", size = 1048576 }]\n")
        .unwrap();
    assert_eq!(cfg.cache.storage[0].size, config::MIN_SPAN_SIZE);
}

#[test]
fn toml_syntax_error_has_a_line() {
    let err = parse_file("[proxy.config]\naccept_threads = 1\naccept_threads = = 2\n").unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].line, Some(3));
    assert!(
        err.to_string()
            .starts_with("records.toml:3: TOML syntax error"),
        "{err}"
    );
    let dup = parse_file("[proxy.config]\naccept_threads = 1\naccept_threads = 2\n").unwrap_err();
    assert_eq!(dup.0[0].line, Some(3), "{dup}");
}

#[test]
fn a_syntax_error_on_a_key_value_line_names_the_record() {
    for big in ["9223372036854775808", "99999999999999999999"] {
        let err = parse_file(&format!("[proxy.config.net]\naccept_period = {big}\n")).unwrap_err();
        assert_eq!(err.0.len(), 1);
        let e = &err.0[0];
        assert_eq!(
            (e.line, e.record.as_str()),
            (Some(2), "proxy.config.net.accept_period"),
            "{err}"
        );
        assert!(e.message.starts_with("TOML syntax error: "), "{err}");
    }
    // Dotted keys and arrays of tables: the parser says where the key is.
    let err =
        parse_file("[proxy.config]\nnet.throttle_delay = 99999999999999999999\n").unwrap_err();
    assert_eq!(err.0[0].record, "proxy.config.net.throttle_delay", "{err}");
    let err = parse_file(
        "[[remap]]\nfrom = \"/\"\nto = \"http://a/\"\n[[remap]]\nfrom = 99999999999999999999\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("records.toml:5: remap: entry 2: from: TOML syntax error: "),
        "{err}"
    );
    // Not a key = value line, or a key the parser refuses: no record is guessed.
    for text in [
        "[proxy.config]\naccept_threads = 1\naccept_threads = 2\n",
        "[proxy.config.net\naccept_period = 1\n",
        "[proxy.config]\nstorage = [\n  99999999999999999999,\n]\n",
        "a b = 1\n",
    ] {
        let err = parse_file(text).unwrap_err();
        assert_eq!(err.0[0].record, "", "{text:?}: {err}");
    }
}

#[test]
fn datetime_value_is_a_wrong_type_error() {
    let errs = errors("[proxy.config.stop]\nshutdown_timeout = 1979-05-27\n");
    assert!(
        errs[0].starts_with("records.toml:2: proxy.config.stop.shutdown_timeout: expected"),
        "{errs:?}"
    );
    assert!(errs[0].contains("date-time"), "{errs:?}");
}

#[test]
fn tables_in_place_of_values_and_values_in_place_of_tables_are_errors() {
    let errs = errors("[proxy.config.net.accept_period]\nx = 1\n");
    assert!(
        errs[0].contains("proxy.config.net.accept_period: expected a whole number"),
        "{errs:?}"
    );
    let errs = errors("[proxy]\nconfig = 1\n");
    assert_eq!(
        errs,
        ["records.toml:2: proxy.config: expected a table of records, got 1"]
    );
}

#[test]
fn quoted_dotted_keys_are_not_record_names() {
    let errs = errors("\"proxy.config.accept_threads\" = 2\n");
    assert!(
        errs[0].starts_with("records.toml:1: proxy.config.accept_threads: a quoted key"),
        "{errs:?}"
    );
}

#[test]
fn error_fields_are_exposed() {
    let err = parse(
        "[proxy.config.net]\naccept_period = 0\n",
        "/etc/t.toml",
        &no_env,
    )
    .unwrap_err();
    let e = &err.0[0];
    assert_eq!(
        (e.origin.as_str(), e.line, e.record.as_str()),
        ("/etc/t.toml", Some(2), "proxy.config.net.accept_period")
    );
    assert!(e.message.ends_with("got 0"));
}

#[test]
fn helpers_interpret_records() {
    let mut cfg = Config::default();
    assert_eq!(cfg.net.effective_listen_backlog(), None);
    cfg.net.listen_backlog = 511;
    assert_eq!(cfg.net.effective_listen_backlog(), Some(511));
    cfg.net.listen_backlog = 65536;
    assert_eq!(cfg.net.effective_listen_backlog(), None);
    assert_eq!(cfg.net.max_accepts_per_wakeup(), None);
    cfg.net.additional_accepts = 0;
    assert_eq!(cfg.net.max_accepts_per_wakeup(), Some(1));
    assert_eq!(cfg.exec_thread.threads(8), 8);
    cfg.exec_thread.autoconfig_scale = 0.1;
    assert_eq!(cfg.exec_thread.threads(4), 1);
    cfg.exec_thread.autoconfig_enabled = false;
    assert_eq!(cfg.exec_thread.threads(64), 2);
}

#[test]
fn parent_rules_read_with_their_defaults() {
    let cfg = parse(
        "[[parent]]\ndest_domain = \".\"\nparents = [\"127.0.0.1:8081\", \"cache.example.net:8082|3\"]\nround_robin = \"consistent_hash\"\n\n[[parent]]\ndest_domain = \"Example.COM\"\nparents = \"a:1|2; b:2\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap();
    assert_eq!(cfg.parents.len(), 2);
    let r = &cfg.parents[0];
    assert_eq!(r.round_robin, config::RoundRobin::ConsistentHash);
    assert!(r.go_direct && r.parent_is_proxy);
    assert_eq!(r.parents[1].weight, 3);
    let r = &cfg.parents[1];
    assert_eq!(r.dest_domain, "example.com");
    assert_eq!(r.round_robin, config::RoundRobin::False);
    assert_eq!(r.parents.len(), 2);
    assert_eq!(r.parents[0].weight, 2);
}

#[test]
fn parent_errors_name_the_key_and_line() {
    let err = parse(
        "[[parent]]\ndest_domain = \".\"\nparents = [\"a:1\"]\n\n[[parent]]\ndest_domain = \"x.com\"\nparents = [\"a:1|0\"]\nround_robin = \"hash\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap_err();
    let errs: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
    assert!(
        errs[0].starts_with("records.toml:7: parent: entry 2: parents: weight \"0\""),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("records.toml:8: parent: entry 2: round_robin: expected"),
        "{errs:?}"
    );
    for bad in [
        "[[parent]]\nparents = [\"a:1\"]\n",
        "[[parent]]\ndest_domain = \".\"\n",
        "[[parent]]\ndest_domain = \".\"\nparents = []\n",
        "[[parent]]\ndest_domain = \".\"\nparents = [\"a:1\", \"a:1\"]\n",
        "[[parent]]\ndest_domain = \"a b\"\nparents = [\"a:1\"]\n",
        "[[parent]]\ndest_domain = \".\"\nparents = [\"a:1\"]\ngo_direct = \"yes\"\n",
        "[[parent]]\ndest_domain = \".\"\nparents = [\"a:1\"]\n[[parent]]\ndest_domain = \".\"\nparents = [\"b:1\"]\n",
        "[proxy.config]\nproxy_name = \"a b\"\n",
        "[proxy.config.http]\nserver_ports = \"9000:blind:tunnel=[a:1]:pp\"\n",
        "[proxy.config.http]\nproxy_protocol_allowlist = [\"nope\"]\n",
    ] {
        assert!(
            parse(bad, "records.toml", &|_| None).is_err(),
            "{bad:?} accepted"
        );
    }
    let cfg = parse(
        "[proxy.config.http]\nserver_ports = \"8080:pp 8081\"\n",
        "records.toml",
        &|_| None,
    )
    .unwrap();
    assert!(cfg.http.server_ports[0].pp && !cfg.http.server_ports[1].pp);
}

#[test]
fn ssl_records_and_certificates_read_and_render_back() {
    let text = "[proxy.config.http]\nserver_ports = \"8443:ssl\"\n\
                [proxy.config.ssl]\nserver.cert.path = \"certs\"\n\
                client.verify.server.policy = \"PERMISSIVE\"\nclient.CA.cert.filename = \"ca.pem\"\n\
                [[ssl_multicert]]\nssl_cert_name = \"a.pem\"\nssl_key_name = \"a.key\"\ndest_ip = \"*\"\n\
                [[ssl_multicert]]\nssl_cert_name = \"b.pem\"\n";
    let cfg = config::parse(text, "records.toml", &|_| None).unwrap();
    assert_eq!(cfg.ssl.server_cert_path, std::path::PathBuf::from("certs"));
    assert_eq!(
        cfg.ssl.client_verify_server_policy,
        config::VerifyPolicy::Permissive
    );
    assert_eq!(cfg.ssl_multicert.len(), 2);
    assert_eq!(cfg.ssl_multicert[0].dest_ip, Some(config::DestIp::Any));
    assert_eq!(cfg.ssl_multicert[1].key, None);
    let again = config::parse(&cfg.to_toml(), "records.toml", &|_| None).unwrap();
    assert_eq!(again.ssl, cfg.ssl);
    assert_eq!(again.ssl_multicert, cfg.ssl_multicert);
}

#[test]
fn an_ssl_port_without_a_certificate_is_an_error_naming_it() {
    let errs = errors("[proxy.config.http]\nserver_ports = \"8080 8443:ssl\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("ssl_multicert") && errs[0].contains("8443:ssl"),
        "{errs:?}"
    );
    let errs = errors("[[ssl_multicert]]\nssl_key_name = \"k\"\n[[ssl_multicert]]\nssl_cert_name = \"a\"\ndest_ip = \"nope\"\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("missing ssl_cert_name"), "{errs:?}");
    assert!(errs[1].contains("dest_ip"), "{errs:?}");
}
