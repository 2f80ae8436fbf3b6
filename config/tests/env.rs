//! Environment overrides and `Config::set`.

use std::collections::HashMap;

use config::{env_var_name, parse, Config};

fn with_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const FILE: &str = "[proxy.config.net]\naccept_period = 30\n";

#[test]
fn env_override_wins_over_file_and_is_listed() {
    let env = with_env(&[("PROXY_CONFIG_NET_ACCEPT_PERIOD", "20")]);
    let cfg = parse(FILE, "records.toml", &env).unwrap();
    assert_eq!(cfg.net.accept_period_ms, 20);
    assert_eq!(
        cfg.env_overrides,
        [(
            "proxy.config.net.accept_period".to_string(),
            "PROXY_CONFIG_NET_ACCEPT_PERIOD".to_string()
        )]
    );
    assert!(cfg.to_toml().contains(
        "# proxy.config.net.accept_period overridden by PROXY_CONFIG_NET_ACCEPT_PERIOD\n"
    ));
}

#[test]
fn unset_env_changes_nothing() {
    let cfg = parse(FILE, "records.toml", &with_env(&[])).unwrap();
    assert_eq!(cfg.net.accept_period_ms, 30);
    assert!(cfg.env_overrides.is_empty());
}

#[test]
fn every_type_of_record_reads_from_env() {
    let env = with_env(&[
        ("PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_ENABLED", "0"),
        ("PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_SCALE", "1.5"),
        ("PROXY_CONFIG_EXEC_THREAD_AFFINITY", "core"),
        ("PROXY_CONFIG_NET_SOCK_OPTIONS_IN", "keepalive,linger0"),
        ("PROXY_CONFIG_HTTP_SERVER_PORTS", "8080 8081:ipv6"),
        ("PROXY_CONFIG_CACHE_RAM_CACHE_SIZE", "1G"),
        ("PROXY_CONFIG_CACHE_STORAGE", "/var/a:1G /var/b:256M"),
        ("PROXY_CONFIG_STATS_ALLOW_IP", "10.0.0.0/8 ::1"),
        ("PROXY_CONFIG_STATS_PATH", "/stats"),
        ("PROXY_CONFIG_URL_REMAP_REMAP_REQUIRED", "false"),
    ]);
    let cfg = parse("", "records.toml", &env).unwrap();
    assert!(!cfg.exec_thread.autoconfig_enabled);
    assert_eq!(cfg.exec_thread.autoconfig_scale, 1.5);
    assert_eq!(cfg.exec_thread.affinity, config::Affinity::Core);
    assert!(cfg.net.sock_options_in.keepalive && cfg.net.sock_options_in.linger0);
    assert!(!cfg.net.sock_options_in.nodelay);
    assert_eq!(
        config::format_server_ports(&cfg.http.server_ports),
        "8080 8081:ipv6"
    );
    assert_eq!(cfg.cache.ram_cache_size, 1 << 30);
    assert_eq!(cfg.cache.storage.len(), 2);
    assert_eq!(cfg.cache.storage[1].size, 256 << 20);
    assert_eq!(cfg.stats.allow_ip.len(), 2);
    assert_eq!(cfg.stats.path, "/stats");
    assert!(!cfg.url_remap.remap_required);
    assert_eq!(cfg.env_overrides.len(), 10);
}

#[test]
fn env_lists_also_take_toml_arrays() {
    let env = with_env(&[
        ("PROXY_CONFIG_STATS_ALLOW_IP", r#"["10.0.0.1"]"#),
        (
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            r#"[{ port = 0, family = "ipv6" }]"#,
        ),
    ]);
    let cfg = parse("", "records.toml", &env).unwrap();
    assert_eq!(cfg.stats.allow_ip[0].to_string(), "10.0.0.1");
    assert_eq!(cfg.http.server_ports[0].family, config::Family::Ipv6);
}

#[test]
fn bad_env_value_names_var_and_record() {
    let env = with_env(&[("PROXY_CONFIG_NET_ACCEPT_PERIOD", "soon")]);
    let err = parse(FILE, "records.toml", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable PROXY_CONFIG_NET_ACCEPT_PERIOD: proxy.config.net.accept_period: \
         expected a whole number of milliseconds from 1 to 60000, got \"soon\""
    );
}

#[test]
fn file_and_env_errors_are_reported_together() {
    let env = with_env(&[
        ("PROXY_CONFIG_HTTP_SERVER_PORTS", "8080:bogus"),
        ("PROXY_CONFIG_EXEC_THREAD_LISTEN", "maybe"),
    ]);
    let err = parse(
        "[proxy.config]\naccept_threads = 999\n",
        "records.toml",
        &env,
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
    assert_eq!(err.0[0].line, Some(2));
    assert_eq!(err.0[1].record, "proxy.config.exec_thread.listen");
    assert_eq!(
        err.0[2].origin,
        "environment variable PROXY_CONFIG_HTTP_SERVER_PORTS"
    );
    assert!(
        err.0[2].message.contains("unknown token \"bogus\""),
        "{err}"
    );
}

#[test]
fn env_var_names_follow_the_record_names() {
    assert_eq!(
        env_var_name("proxy.config.http.server_ports"),
        "PROXY_CONFIG_HTTP_SERVER_PORTS"
    );
    assert_eq!(
        env_var_name("proxy.config.http.cache.http"),
        "PROXY_CONFIG_HTTP_CACHE_HTTP"
    );
}

#[test]
fn set_applies_command_line_overrides_and_checks_them() {
    let mut cfg = Config::default();
    cfg.set("proxy.config.accept_threads", "4", "--accept-threads")
        .unwrap();
    assert_eq!(cfg.accept_threads, 4);
    assert_eq!(
        cfg.env_overrides,
        [(
            "proxy.config.accept_threads".to_string(),
            "--accept-threads".to_string()
        )]
    );
    let err = cfg
        .set("proxy.config.accept_threads", "999", "--accept-threads")
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--accept-threads: proxy.config.accept_threads: expected"),
        "{err}"
    );
    assert_eq!(cfg.accept_threads, 4, "a refused value leaves the old one");
    assert!(cfg.set("proxy.config.nope", "1", "x").is_err());
    assert!(cfg.set("remap", "/", "x").is_err());
}

#[test]
fn load_reads_an_explicit_path_and_reports_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("turnstile-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.toml");
    std::fs::write(&path, "[proxy.config]\naccept_threads = 3\n").unwrap();
    let env = with_env(&[("PROXY_CONFIG_STOP_SHUTDOWN_TIMEOUT", "5")]);
    let cfg = config::load_with(Some(&path), &env).unwrap();
    assert_eq!((cfg.accept_threads, cfg.stop.shutdown_timeout_s), (3, 5));
    assert_eq!(cfg.origin, path.display().to_string());
    let missing = config::load_with(Some(&dir.join("missing.toml")), &env).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read the configuration"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
