//! Certificates at scale (a benchmark, not a test): how long 10,000 `[[ssl_multicert]]`
//! certificates take to load and how much memory they hold, how long an SNI lookup
//! takes for the first, middle and last of them (equal times: no scan), and the
//! daemon's memory across 1,000 live reloads.
//!
//! ```sh
//! cargo bench --bench tls_certs                      # 10,000 certificates, 1,000 reloads
//! TLS_CERTS=2000 TLS_RELOADS=200 cargo bench --bench tls_certs
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Writes `n` certificates (`site{i}.example`, every tenth also `*.w{i}.example`) with
/// their keys into `dir`; returns their `[[ssl_multicert]]` entries.
fn make_certs(dir: &Path, n: usize) -> Vec<config::SslCert> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut names = vec![format!("site{i}.example")];
        if i % 10 == 0 {
            names.push(format!("*.w{i}.example"));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join(format!("{i}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{i}.key")), key.serialize_pem()).unwrap();
        out.push(config::SslCert {
            cert: format!("{i}.pem").into(),
            key: Some(format!("{i}.key").into()),
            dest_ip: (i == 0).then_some(config::DestIp::Any),
        });
    }
    out
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("turnstile-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_and_resolve(n: usize) {
    let dir = temp_dir("certs");
    let t = Instant::now();
    let entries = make_certs(&dir, n);
    eprintln!(
        "generated {n} certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let keep = turnstile::tls::TlsKeep::new().unwrap();
    let dirs = turnstile::tls::CertDirs {
        certs: dir.clone(),
        keys: dir.clone(),
    };
    let me = std::process::id();
    let before = rss_kib(me);
    let t = Instant::now();
    let store = turnstile::tls::CertStore::load(&entries, &dirs, keep.provider()).unwrap();
    let server = turnstile::tls::TlsServer::with_store(Arc::new(store), &keep).unwrap();
    let load = t.elapsed();
    let after = rss_kib(me);
    println!(
        "load: {n} certificates in {:.0} ms ({:.1} µs each), RSS +{} KiB ({:.2} KiB each)",
        load.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e6 / n as f64,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
    let store = server.store();
    let lookups = 1_000_000;
    for (what, name) in [
        ("first", "site1.example".to_string()),
        ("middle", format!("site{}.example", n / 2)),
        ("last", format!("site{}.example", n - 1)),
        ("wildcard", format!("a.w{}.example", (n - 1) / 10 * 10)),
        ("no match", "nowhere.example".to_string()),
    ] {
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..lookups {
            found += usize::from(
                store
                    .pick(Some(std::hint::black_box(&name)), None)
                    .0
                    .is_some(),
            );
        }
        assert_eq!(found, lookups);
        println!(
            "SNI {what:>8} ({name}): {:.0} ns a lookup",
            t.elapsed().as_secs_f64() * 1e9 / lookups as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn reloads(certs: usize, n: usize) {
    let dir = temp_dir("reload");
    let entries = make_certs(&dir, certs);
    let mut toml = String::from(
        "[proxy.config]\naccept_threads = 0\n[proxy.config.http]\nserver_ports = \"0:ssl\"\n",
    );
    toml.push_str(&format!(
        "[proxy.config.admin]\nsocket = \"{}\"\n",
        dir.join("ctl.sock").display()
    ));
    for e in &entries {
        toml.push_str(&format!(
            "[[ssl_multicert]]\nssl_cert_name = \"{}\"\nssl_key_name = \"{}\"\n",
            e.cert.display(),
            e.key.as_ref().unwrap().display()
        ));
        if e.dest_ip.is_some() {
            toml.push_str("dest_ip = \"*\"\n");
        }
    }
    let cfg = dir.join("records.toml");
    std::fs::write(&cfg, toml).unwrap();
    let bin = env!("CARGO_BIN_EXE_turnstile");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .contains("ports accepting")
    {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut samples = vec![(0, rss_kib(pid))];
    let t = Instant::now();
    for i in 1..=n {
        let out = Command::new(bin)
            .args(["--config", cfg.to_str().unwrap(), "ctl", "config", "reload"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i % (n / 10).max(1) == 0 {
            samples.push((i, rss_kib(pid)));
        }
    }
    let each = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let _ = child.kill();
    let _ = child.wait();
    let line: Vec<String> = samples
        .iter()
        .map(|(i, kib)| format!("{i}:{:.1}", *kib as f64 / 1024.0))
        .collect();
    println!(
        "reloads: {n} of {certs} certificates, {each:.1} ms each (ctl round trip included); RSS MiB after N reloads: {}",
        line.join(" ")
    );
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let certs = env_num("TLS_CERTS", if quick { 50 } else { 10_000 });
    let reload_certs = env_num("TLS_RELOAD_CERTS", if quick { 10 } else { 100 });
    let n = env_num("TLS_RELOADS", if quick { 5 } else { 1_000 });
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    load_and_resolve(certs);
    reloads(reload_certs, n);
}
