//! The record table checked against itself and the schema.

use super::*;

#[test]
fn every_record_reads_back_what_it_writes() {
    let cfg = Config::default();
    for r in RECORDS {
        let mut copy = cfg.clone();
        r.apply(&mut copy, &r.get(&cfg))
            .unwrap_or_else(|e| panic!("{}: {e:?}", r.name));
        assert_eq!(copy, cfg, "{}", r.name);
    }
}

#[test]
fn names_are_unique_and_tables_are_not_records() {
    for (i, r) in RECORDS.iter().enumerate() {
        assert!(
            RECORDS[..i].iter().all(|o| o.name != r.name),
            "{} twice",
            r.name
        );
        assert!(!is_table(r.name), "{} is both", r.name);
    }
    assert!(
        is_table("proxy") && is_table("proxy.config.net") && is_table("proxy.config.http.cache")
    );
    assert!(!is_table("proxy.config.ne"));
}

#[test]
fn reloadable_matches_the_spec_list() {
    let r: Vec<&str> = RECORDS
        .iter()
        .filter(|r| r.reloadable)
        .map(|r| r.name)
        .collect();
    assert_eq!(
        r,
        [
            "proxy.config.accept_threads",
            "proxy.config.net.accept_period",
            "proxy.config.net.additional_accepts",
            "proxy.config.net.accept_coalesce",
            "proxy.config.net.throttle_delay",
            "proxy.config.net.connections_throttle",
            "proxy.config.net.throttle_mode",
            "proxy.config.http.per_server.connection.max",
            "proxy.config.http.connect_ports",
            "proxy.config.http.cache.heuristic_min_lifetime",
            "proxy.config.http.cache.heuristic_max_lifetime",
            "proxy.config.http.cache.heuristic_lm_factor",
            "proxy.config.http.background_fill_completed_threshold",
            "proxy.config.http.cache.max_stale_age",
            "proxy.config.http.cache.targeted_cache_control_headers",
            "proxy.config.http.cache.purge_allow_ip",
            "proxy.config.http.parent_proxy.retry_time",
            "proxy.config.http.parent_proxy.fail_threshold",
            "proxy.config.http.parent_proxy.total_connect_attempts",
            "proxy.config.http.proxy_protocol_allowlist",
            "proxy.config.stats.allow_ip",
            "proxy.config.ssl.client.verify.server.policy",
            "proxy.config.ssl.client.CA.cert.filename",
            "ssl_multicert",
            "remap",
            "parent",
        ]
    );
    assert!(reloadable(PORT_ACCEPT_THREADS));
    assert!(!reloadable("proxy.config.http.server_ports"));
    assert!(!reloadable("no.such.record"));
}

#[test]
fn suggestions_find_near_misses() {
    assert_eq!(
        suggest("proxy.config.net.accept_perod"),
        Some("proxy.config.net.accept_period")
    );
    assert_eq!(
        suggest("server_ports"),
        Some("proxy.config.http.server_ports")
    );
    assert_eq!(suggest("proxy.config.zzz"), None);
}

#[test]
fn the_readme_lists_every_record_and_whether_it_reloads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    for r in RECORDS {
        let row = if r.name.starts_with("proxy.") {
            format!("| `{}` |", r.name)
        } else {
            format!("| `[[{}]]`", r.name)
        };
        let line = readme
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("README's record table has no row for {}", r.name));
        assert_eq!(
            line.trim_end().ends_with("| R |"),
            r.reloadable,
            "README's row for {} says the wrong thing about reloads",
            r.name
        );
    }
}

#[test]
fn records_toml_marks_exactly_the_reloadable_records() {
    // Each key's comment block (the `#` lines just above it) ends with "(R)" when a
    // reload applies it.
    let mut table = String::new();
    let mut comment = String::new();
    let mut seen = 0;
    for line in crate::DEFAULT_RECORDS.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_string();
            comment.clear();
        } else if let Some(text) = line.strip_prefix('#') {
            comment.push_str(text);
        } else if let Some((key, _)) = line.split_once('=') {
            let name = format!("{table}.{}", key.trim());
            let r = find(&name).unwrap_or_else(|| panic!("records.toml has {name}"));
            assert_eq!(
                comment.contains("(R)"),
                r.reloadable,
                "records.toml's comment on {name} says the wrong thing about reloads"
            );
            seen += 1;
            comment.clear();
        } else {
            comment.clear();
        }
    }
    assert_eq!(
        seen,
        RECORDS
            .iter()
            .filter(|r| r.name.starts_with("proxy."))
            .count()
    );
}
