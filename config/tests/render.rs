//! `Config::to_toml` round trips and reload diffs.

use std::path::PathBuf;

use config::{
    parse, parse_server_ports, Affinity, CacheSpan, Config, RemapRule, RemapUrl, SockOptions,
    ThrottleMode, WaitForCache, EMBEDDED_ORIGIN,
};

fn reparse(cfg: &Config) -> Config {
    let text = cfg.to_toml();
    parse(&text, &cfg.origin, &|_| None).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// A configuration with every record away from its default.
fn everything_changed() -> Config {
    let mut c = Config {
        accept_threads: 3,
        ..Config::default()
    };
    c.exec_thread.autoconfig_enabled = false;
    c.exec_thread.autoconfig_scale = 0.5;
    c.exec_thread.limit = 7;
    c.exec_thread.affinity = Affinity::Core;
    c.exec_thread.listen = true;
    c.net.accept_period_ms = 11;
    c.net.additional_accepts = 8;
    c.net.accept_coalesce_us = 0;
    c.net.throttle_delay_ms = 51;
    c.net.listen_backlog = 1024;
    c.net.defer_accept_s = 5;
    c.net.send_batch = false;
    c.net.connections_throttle = 0;
    c.net.throttle_mode = ThrottleMode::Close;
    c.net.sock_options_in = SockOptions {
        nodelay: false,
        keepalive: true,
        linger0: true,
    };
    c.net.sock_recv_buffer_size_in = 65536;
    c.net.sock_send_buffer_size_in = 1000;
    c.net.sock_notsent_lowat_in = 0;
    c.net.default_inactivity_timeout_s = 600;
    c.http.accept_no_activity_timeout_s = 5;
    c.http.keep_alive_no_activity_timeout_in_s = 6;
    c.http.keep_alive_no_activity_timeout_out_s = 9;
    c.http.per_server_connection_max = 7;
    c.http.connect_ports = config::ConnectPorts::parse("443 8000-8100").unwrap();
    c.http.server_ports =
        parse_server_ports("0:pp 8080:ipv6:ip-in=[::1]:reuseport 9000:blind:tunnel=[db:5432]:accept_threads=2 8081:periodic:fd=3 8443:ssl")
            .unwrap();
    c.http.request_header_max_size = 4096;
    c.http.connect_attempts_timeout_s = 7;
    c.http.transaction_no_activity_timeout_out_s = 8;
    c.http.transaction_no_activity_timeout_in_s = 4;
    c.http.underscores_in_headers = true;
    c.http.wait_for_cache = WaitForCache::WaitRequireAll;
    c.http.cache_http = false;
    c.http.heuristic_min_lifetime_s = 60;
    c.http.heuristic_max_lifetime_s = 600;
    c.http.heuristic_lm_factor = 0.5;
    c.http.background_fill_threshold = 0.25;
    c.http.max_stale_age_s = 10;
    c.http.targeted_cache_control_headers = "Edge-Cache-Control, CDN-Cache-Control".into();
    c.http.purge_allow_ip = vec!["10.0.0.0/8".parse().unwrap()];
    c.http.parent_proxy.retry_time_s = 9;
    c.http.parent_proxy.fail_threshold = 2;
    c.http.parent_proxy.total_connect_attempts = 3;
    c.http.proxy_protocol_allowlist = vec!["10.0.0.0/8".parse().unwrap()];
    c.proxy_name = "edge-1".into();
    c.parents = vec![config::ParentRule {
        dest_domain: "example.com".into(),
        parents: vec![
            config::ParentHost::parse("p1:8080").unwrap(),
            config::ParentHost::parse("[::1]:8081|3").unwrap(),
        ],
        round_robin: config::RoundRobin::ConsistentHash,
        go_direct: false,
        parent_is_proxy: false,
    }];
    c.cache.storage = vec![
        CacheSpan {
            path: PathBuf::from("/var/cache/a \"quoted\""),
            size: 1 << 30,
        },
        CacheSpan {
            path: PathBuf::from("/var/cache/b"),
            size: (1 << 20) + 12345,
        },
    ];
    c.cache.ram_cache_size = 3 << 20;
    c.cache.max_doc_size = 1000;
    c.cache.fill_read_ahead = 1 << 20;
    c.cache.max_alts = 0;
    c.stats.path = "/stats".into();
    c.stats.allow_ip = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    c.admin.socket = PathBuf::from("/run/turnstile.sock");
    c.stop.shutdown_timeout_s = 0;
    c.upgrade.ready_timeout_s = 7;
    c.pid_file = PathBuf::from("/run/turnstile.pid");
    c.log.access_log = PathBuf::from("/var/log/turnstile/access.log");
    c.url_remap.remap_required = false;
    c.remap = vec![
        RemapRule {
            from: RemapUrl::parse("http://www.example.com/", true).unwrap(),
            to: RemapUrl::parse("http://127.0.0.1:9000/", false).unwrap(),
        },
        RemapRule {
            from: RemapUrl::parse("/", true).unwrap(),
            to: RemapUrl::parse("https://[::1]/x", false).unwrap(),
        },
    ];
    c.ssl = config::Ssl {
        server_cert_path: PathBuf::from("/etc/turnstile/certs"),
        server_private_key_path: PathBuf::from("/etc/turnstile/keys"),
        client_verify_server_policy: config::VerifyPolicy::Disabled,
        client_ca_cert_filename: PathBuf::from("ca.pem"),
    };
    c.ssl_multicert = vec![
        config::SslCert {
            cert: PathBuf::from("a.pem"),
            key: Some(PathBuf::from("a.key")),
            dest_ip: Some(config::DestIp::Any),
        },
        config::SslCert {
            cert: PathBuf::from("b.pem"),
            key: None,
            dest_ip: Some(config::DestIp::Ip("127.0.0.1".parse().unwrap())),
        },
    ];
    c
}

#[test]
fn default_round_trips_through_to_toml() {
    let c = Config::default();
    assert_eq!(reparse(&c), c);
}

#[test]
fn config_with_every_record_changed_round_trips() {
    let c = everything_changed();
    let back = reparse(&c);
    assert_eq!(back, c, "\n{}", c.to_toml());
    // And it really changed every record.
    let names: Vec<String> = config::record_names().map(String::from).collect();
    assert_eq!(Config::default().changed_records(&c), names);
}

#[test]
fn to_toml_uses_the_records_toml_layout() {
    let text = Config::default().to_toml();
    assert!(text.starts_with(&format!(
        "# Effective Turnstile configuration, from {EMBEDDED_ORIGIN}\n"
    )));
    for needle in [
        "\n[proxy.config]\naccept_threads = 1\n",
        "\n[proxy.config.net]\naccept_period = 10\n",
        "autoconfig.enabled = true\n",
        "server_ports = \"8080\"\n",
        "ram_cache.size = \"64M\"\n",
        "allow_ip = [\"127.0.0.1\", \"::1\"]\n",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    assert!(everything_changed()
        .to_toml()
        .contains("\n[[remap]]\nfrom = \"http://www.example.com/\"\n"));
}

#[test]
fn overrides_become_comments_and_values() {
    let env = |k: &str| (k == "PROXY_CONFIG_NET_THROTTLE_MODE").then(|| "close".to_string());
    let c = parse("", "records.toml", &env).unwrap();
    let text = c.to_toml();
    assert!(
        text.lines().nth(1)
            == Some(
                "# proxy.config.net.throttle_mode overridden by PROXY_CONFIG_NET_THROTTLE_MODE"
            ),
        "{text}"
    );
    let back = parse(&text, "records.toml", &|_| None).unwrap();
    assert_eq!(back.net.throttle_mode, ThrottleMode::Close);
}

#[test]
fn reloadable_changes_need_no_restart() {
    let old = Config::default();
    let mut new = old.clone();
    new.accept_threads = 4;
    new.net.accept_period_ms = 20;
    new.net.additional_accepts = 3;
    new.net.accept_coalesce_us = 250;
    new.net.throttle_delay_ms = 9;
    new.net.connections_throttle = 5;
    new.net.throttle_mode = ThrottleMode::Close;
    new.stats.allow_ip.clear();
    new.remap = everything_changed().remap;
    new.http.server_ports[0].accept_threads = Some(8);
    new.http.per_server_connection_max = 16;
    new.http.parent_proxy = everything_changed().http.parent_proxy;
    new.http.proxy_protocol_allowlist.clear();
    new.parents = everything_changed().parents;
    assert!(
        old.restart_required_changes(&new).is_empty(),
        "{:?}",
        old.restart_required_changes(&new)
    );
    assert_eq!(old.changed_records(&new).len(), 16);
}

#[test]
fn other_changes_are_named_as_restart_required() {
    let old = Config::default();
    let new = everything_changed();
    let restart = old.restart_required_changes(&new);
    assert!(restart.contains(&"proxy.config.http.server_ports".to_string()));
    assert!(restart.contains(&"proxy.config.exec_thread.limit".to_string()));
    assert!(!restart.contains(&"proxy.config.accept_threads".to_string()));
    assert!(!restart.contains(&"remap".to_string()));
    assert_eq!(restart.len(), config::record_names().count() - 26);

    let mut moved = old.clone();
    moved.http.server_ports = parse_server_ports("8080 8081").unwrap();
    assert_eq!(
        old.restart_required_changes(&moved),
        ["proxy.config.http.server_ports"]
    );
    let mut reordered = moved.clone();
    reordered.http.server_ports.reverse();
    assert!(
        moved.restart_required_changes(&reordered).is_empty(),
        "order alone is no change"
    );
}

#[test]
fn origin_and_overrides_are_not_records() {
    let old = Config::default();
    let new = Config {
        origin: "x".into(),
        env_overrides: vec![("a".into(), "b".into())],
        ..old.clone()
    };
    assert!(old.changed_records(&new).is_empty());
}
