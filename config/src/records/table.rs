//! The table itself: every record of SPEC §3 in records.toml order.

use crate::env::EnvForm;
use crate::ipnet::IpNet;
use crate::parent::parents_to_value;
use crate::ports::MAX_ACCEPT_THREADS;
use crate::schema::{Affinity, ThrottleMode, WaitForCache};
use crate::ssl::{certs_from_value, certs_to_value, VerifyPolicy};
use crate::value::Value;

use super::custom::*;
use super::{Kind, Record, MAX_TIMEOUT_S};

const SECONDS: &str = "seconds";
const MS: &str = "milliseconds";
const US: &str = "microseconds";

/// Every record, in records.toml order.
pub(crate) static RECORDS: &[Record] = &[
    Record {
        name: "proxy.config.accept_threads",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_ACCEPT_THREADS as i64,
            unit: "threads",
            get: |c| c.accept_threads.into(),
            set: |c, v| c.accept_threads = v as u32,
        },
    },
    Record {
        name: "proxy.config.proxy_name",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.proxy_name.clone()),
            apply: apply_proxy_name,
        },
    },
    Record {
        name: "proxy.config.pid_file",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.pid_file.to_string_lossy().into_owned()),
            apply: apply_pid_file,
        },
    },
    Record {
        name: "proxy.config.exec_thread.autoconfig.enabled",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.exec_thread.autoconfig_enabled,
            set: |c, v| c.exec_thread.autoconfig_enabled = v,
        },
    },
    Record {
        name: "proxy.config.exec_thread.autoconfig.scale",
        reloadable: false,
        kind: Kind::Float {
            min: 0.0,
            min_allowed: false,
            max: 64.0,
            get: |c| c.exec_thread.autoconfig_scale,
            set: |c, v| c.exec_thread.autoconfig_scale = v,
        },
    },
    Record {
        name: "proxy.config.exec_thread.limit",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: 1024,
            unit: "threads",
            get: |c| c.exec_thread.limit.into(),
            set: |c, v| c.exec_thread.limit = v as u32,
        },
    },
    Record {
        name: "proxy.config.exec_thread.affinity",
        reloadable: false,
        kind: Kind::Choice {
            choices: Affinity::NAMES,
            get: |c| c.exec_thread.affinity as usize,
            set: |c, i| c.exec_thread.affinity = Affinity::ALL[i],
        },
    },
    Record {
        name: "proxy.config.exec_thread.listen",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.exec_thread.listen,
            set: |c, v| c.exec_thread.listen = v,
        },
    },
    Record {
        name: "proxy.config.net.accept_period",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 60_000,
            unit: MS,
            get: |c| c.net.accept_period_ms as i64,
            set: |c, v| c.net.accept_period_ms = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.additional_accepts",
        reloadable: true,
        kind: Kind::Int {
            min: -1,
            max: i64::MAX,
            unit: "accepts",
            get: |c| c.net.additional_accepts,
            set: |c, v| c.net.additional_accepts = v,
        },
    },
    Record {
        name: "proxy.config.net.accept_coalesce",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: 10_000,
            unit: US,
            get: |c| c.net.accept_coalesce_us as i64,
            set: |c, v| c.net.accept_coalesce_us = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.throttle_delay",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 60_000,
            unit: MS,
            get: |c| c.net.throttle_delay_ms as i64,
            set: |c, v| c.net.throttle_delay_ms = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.listen_backlog",
        reloadable: false,
        kind: Kind::Int {
            min: i64::MIN,
            max: i64::MAX,
            unit: "",
            get: |c| c.net.listen_backlog,
            set: |c, v| c.net.listen_backlog = v,
        },
    },
    Record {
        name: "proxy.config.net.defer_accept",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 3600,
            unit: SECONDS,
            get: |c| c.net.defer_accept_s.into(),
            set: |c, v| c.net.defer_accept_s = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.send_batch",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.net.send_batch,
            set: |c, v| c.net.send_batch = v,
        },
    },
    Record {
        name: "proxy.config.net.connections_throttle",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: i64::MAX,
            unit: "connections",
            get: |c| c.net.connections_throttle as i64,
            set: |c, v| c.net.connections_throttle = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.throttle_mode",
        reloadable: true,
        kind: Kind::Choice {
            choices: ThrottleMode::NAMES,
            get: |c| c.net.throttle_mode as usize,
            set: |c, i| c.net.throttle_mode = ThrottleMode::ALL[i],
        },
    },
    Record {
        name: "proxy.config.net.sock_options_in",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_sock_options,
            apply: apply_sock_options,
        },
    },
    Record {
        name: "proxy.config.net.sock_recv_buffer_size_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_recv_buffer_size_in.into(),
            set: |c, v| c.net.sock_recv_buffer_size_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.sock_send_buffer_size_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_send_buffer_size_in.into(),
            set: |c, v| c.net.sock_send_buffer_size_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.sock_notsent_lowat_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_notsent_lowat_in.into(),
            set: |c, v| c.net.sock_notsent_lowat_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.default_inactivity_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.net.default_inactivity_timeout_s as i64,
            set: |c, v| c.net.default_inactivity_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.server_ports",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Ports),
            get: get_server_ports,
            apply: apply_server_ports,
        },
    },
    Record {
        name: "proxy.config.http.accept_no_activity_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.accept_no_activity_timeout_s as i64,
            set: |c, v| c.http.accept_no_activity_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.keep_alive_no_activity_timeout_in",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.keep_alive_no_activity_timeout_in_s as i64,
            set: |c, v| c.http.keep_alive_no_activity_timeout_in_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.keep_alive_no_activity_timeout_out",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.keep_alive_no_activity_timeout_out_s as i64,
            set: |c, v| c.http.keep_alive_no_activity_timeout_out_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.request_header_max_size",
        reloadable: false,
        kind: Kind::Size {
            min: 1024,
            max: 16 << 20,
            as_string: false,
            get: |c| c.http.request_header_max_size as u64,
            set: |c, v| c.http.request_header_max_size = v as usize,
        },
    },
    Record {
        name: "proxy.config.http.connect_attempts_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.connect_attempts_timeout_s as i64,
            set: |c, v| c.http.connect_attempts_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.per_server.connection.max",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: 1_000_000,
            unit: "transactions",
            get: |c| c.http.per_server_connection_max as i64,
            set: |c, v| c.http.per_server_connection_max = v as usize,
        },
    },
    Record {
        name: "proxy.config.http.connect_ports",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.http.connect_ports.to_string()),
            apply: apply_connect_ports,
        },
    },
    Record {
        name: "proxy.config.http.transaction_no_activity_timeout_out",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.transaction_no_activity_timeout_out_s as i64,
            set: |c, v| c.http.transaction_no_activity_timeout_out_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.transaction_no_activity_timeout_in",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.transaction_no_activity_timeout_in_s as i64,
            set: |c, v| c.http.transaction_no_activity_timeout_in_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.underscores_in_headers",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.http.underscores_in_headers,
            set: |c, v| c.http.underscores_in_headers = v,
        },
    },
    Record {
        name: "proxy.config.http.wait_for_cache",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 3,
            unit: "",
            get: |c| c.http.wait_for_cache.level().into(),
            set: |c, v| c.http.wait_for_cache = WaitForCache::ALL[v as usize],
        },
    },
    Record {
        name: "proxy.config.http.cache.http",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.http.cache_http,
            set: |c, v| c.http.cache_http = v,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_min_lifetime",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.heuristic_min_lifetime_s as i64,
            set: |c, v| c.http.heuristic_min_lifetime_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_max_lifetime",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.heuristic_max_lifetime_s as i64,
            set: |c, v| c.http.heuristic_max_lifetime_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_lm_factor",
        reloadable: true,
        kind: Kind::Float {
            min: 0.0,
            min_allowed: false,
            max: 1.0,
            get: |c| c.http.heuristic_lm_factor,
            set: |c, v| c.http.heuristic_lm_factor = v,
        },
    },
    Record {
        name: "proxy.config.http.background_fill_completed_threshold",
        reloadable: true,
        kind: Kind::Float {
            min: 0.0,
            min_allowed: true,
            max: 1.0,
            get: |c| c.http.background_fill_threshold,
            set: |c, v| c.http.background_fill_threshold = v,
        },
    },
    Record {
        name: "proxy.config.http.cache.max_stale_age",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.max_stale_age_s as i64,
            set: |c, v| c.http.max_stale_age_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.targeted_cache_control_headers",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.http.targeted_cache_control_headers.clone()),
            apply: apply_targeted,
        },
    },
    Record {
        name: "proxy.config.http.cache.purge_allow_ip",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: |c| {
                Value::Array(
                    c.http
                        .purge_allow_ip
                        .iter()
                        .map(|n| Value::Str(n.to_string()))
                        .collect(),
                )
            },
            apply: |c, v| {
                c.http.purge_allow_ip =
                    string_list(v, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.retry_time",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.parent_proxy.retry_time_s as i64,
            set: |c, v| c.http.parent_proxy.retry_time_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.fail_threshold",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 1_000_000,
            unit: "failures",
            get: |c| c.http.parent_proxy.fail_threshold.into(),
            set: |c, v| c.http.parent_proxy.fail_threshold = v as u32,
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.total_connect_attempts",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 1000,
            unit: "attempts",
            get: |c| c.http.parent_proxy.total_connect_attempts.into(),
            set: |c, v| c.http.parent_proxy.total_connect_attempts = v as u32,
        },
    },
    Record {
        name: "proxy.config.http.proxy_protocol_allowlist",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_proxy_protocol_allowlist,
            apply: apply_proxy_protocol_allowlist,
        },
    },
    Record {
        name: "proxy.config.cache.storage",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Storage),
            get: get_storage,
            apply: apply_storage,
        },
    },
    Record {
        name: "proxy.config.cache.ram_cache.size",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: u64::MAX,
            as_string: true,
            get: |c| c.cache.ram_cache_size,
            set: |c, v| c.cache.ram_cache_size = v,
        },
    },
    Record {
        name: "proxy.config.cache.max_doc_size",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: u64::MAX,
            as_string: true,
            get: |c| c.cache.max_doc_size,
            set: |c, v| c.cache.max_doc_size = v,
        },
    },
    Record {
        name: "proxy.config.cache.fill_read_ahead",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: u64::MAX,
            as_string: true,
            get: |c| c.cache.fill_read_ahead,
            set: |c, v| c.cache.fill_read_ahead = v,
        },
    },
    Record {
        name: "proxy.config.cache.limits.http.max_alts",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 65_535,
            unit: "variants",
            get: |c| c.cache.max_alts as i64,
            set: |c, v| c.cache.max_alts = v as usize,
        },
    },
    Record {
        name: "proxy.config.stats.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.stats.path.clone()),
            apply: apply_stats_path,
        },
    },
    Record {
        name: "proxy.config.stats.allow_ip",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_allow_ip,
            apply: apply_allow_ip,
        },
    },
    Record {
        name: "proxy.config.admin.socket",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.admin.socket.to_string_lossy().into_owned()),
            apply: apply_admin_socket,
        },
    },
    Record {
        name: "proxy.config.stop.shutdown_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.stop.shutdown_timeout_s as i64,
            set: |c, v| c.stop.shutdown_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.upgrade.ready_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.upgrade.ready_timeout_s as i64,
            set: |c, v| c.upgrade.ready_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.log.access_log",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.log.access_log.to_string_lossy().into_owned()),
            apply: apply_access_log,
        },
    },
    Record {
        name: "proxy.config.url_remap.remap_required",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.url_remap.remap_required,
            set: |c, v| c.url_remap.remap_required = v,
        },
    },
    Record {
        name: "proxy.config.ssl.server.cert.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.server_cert_path),
            apply: |c, v| {
                c.ssl.server_cert_path = path_value(v, "a directory", false)?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.ssl.server.private_key.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.server_private_key_path),
            apply: |c, v| {
                c.ssl.server_private_key_path = path_value(v, "a directory", false)?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.ssl.client.verify.server.policy",
        reloadable: true,
        kind: Kind::Choice {
            choices: VerifyPolicy::NAMES,
            get: |c| c.ssl.client_verify_server_policy as usize,
            set: |c, i| c.ssl.client_verify_server_policy = VerifyPolicy::ALL[i],
        },
    },
    Record {
        name: "proxy.config.ssl.client.CA.cert.filename",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.client_ca_cert_filename),
            apply: |c, v| {
                c.ssl.client_ca_cert_filename =
                    path_value(v, "a PEM file, or \"\" for none", true)?;
                Ok(())
            },
        },
    },
    Record {
        name: "ssl_multicert",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: |c| certs_to_value(&c.ssl_multicert),
            apply: |c, v| {
                c.ssl_multicert = certs_from_value(v)?;
                Ok(())
            },
        },
    },
    Record {
        name: "remap",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: get_remap,
            apply: apply_remap,
        },
    },
    Record {
        name: "parent",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: |c| parents_to_value(&c.parents),
            apply: apply_parents,
        },
    },
];
