//! The daemon's life: the ATS start-up sequence, the control loop (signals and `ctl`),
//! live reload and graceful stop. Everything here runs on the main thread except what it
//! hands to the event threads, the `[CTL]` thread and the `[SIGNALS]` thread.
//!
//! Start-up: config → ET_NET threads → bind every port (a taken port fails fast, exit 1)
//! → cache → ports start exactly once, when both start-up and the cache are done
//! ([`StartGate`]) → `proxy.process.proxy.ports_ready` and one "ports accepting" line.

use crate::ctl::{self, CtlServer};
use crate::error::{Error, Result};
use crate::gate::StartGate;
use crate::http::{
    remap::RemapTable, HttpAcceptor, HttpSettings, HttpShared, Live, PortRole, Timeouts,
};
use crate::ports::{self, AcceptPlan, Port};
use crate::signals::{self, Control};
use crate::tls::{TlsClient, TlsKeep, TlsMetrics, TlsServer};
use config::{Config, PortKind};
use iocore::{
    Event, EventProcessor, EventProcessorOptions, ListenOptions, NetProcessor, NetTuning, Registry,
    SockOptions, ThrottleMode,
};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server name in `Via` and in stats.
pub const SERVER: &str = concat!("turnstile/", env!("CARGO_PKG_VERSION"));

/// How often each ET_NET thread checks its sessions' timeouts.
const SWEEP_PERIOD: Duration = Duration::from_millis(200);

/// Where the configuration came from, so a reload reads the same place.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// `--config PATH`, if given.
    pub path: Option<PathBuf>,
    /// Command-line record overrides `(record, value, flag)`, applied after the env.
    pub overrides: Vec<(String, String, String)>,
}

impl ConfigSource {
    /// Loads (file or embedded default, then env, then command line).
    pub fn load(&self) -> Result<Config> {
        let mut cfg =
            config::load(self.path.as_deref()).map_err(|e| Error::config(e.to_string()))?;
        for (record, value, flag) in &self.overrides {
            cfg.set(record, value, flag)
                .map_err(|e| Error::config(e.to_string()))?;
        }
        Ok(cfg)
    }
}

fn tuning(cfg: &Config) -> NetTuning {
    NetTuning {
        accept_period: Duration::from_millis(cfg.net.accept_period_ms),
        additional_accepts: cfg.net.additional_accepts,
        throttle_delay: Duration::from_millis(cfg.net.throttle_delay_ms),
        connections_throttle: cfg.net.connections_throttle,
        throttle_mode: match cfg.net.throttle_mode {
            config::ThrottleMode::Pause => ThrottleMode::Pause,
            config::ThrottleMode::Close => ThrottleMode::Close,
        },
    }
}

fn sock_options(cfg: &Config) -> SockOptions {
    let o = &cfg.net.sock_options_in;
    SockOptions {
        nodelay: o.nodelay,
        keepalive: o.keepalive,
        linger0: o.linger0,
        recv_buffer: cfg.net.sock_recv_buffer_size_in as usize,
        send_buffer: cfg.net.sock_send_buffer_size_in as usize,
    }
}

fn listen_options(cfg: &Config) -> ListenOptions {
    let mut o = ListenOptions::new("0.0.0.0:0".parse().expect("literal address"));
    o.backlog = cfg.net.listen_backlog;
    o.defer_accept_s = cfg.net.defer_accept_s;
    // exec_thread.listen needs SO_REUSEPORT on every socket, so a reload can move any
    // port to event mode with one socket per thread.
    o.reuseport = cfg.exec_thread.listen;
    o
}

fn plan(cfg: &Config, spec: &config::PortSpec) -> AcceptPlan {
    AcceptPlan {
        threads: cfg.accept_threads_for(spec),
        periodic: spec.periodic,
        listener_per_thread: cfg.exec_thread.listen,
        avoid_event_cores: cfg.exec_thread.affinity == config::Affinity::Core,
    }
}

fn settings(cfg: &Config) -> HttpSettings {
    let s = Duration::from_secs;
    HttpSettings {
        stats_path: cfg.stats.path.clone(),
        max_head: cfg.http.request_header_max_size,
        remap_required: cfg.url_remap.remap_required,
        timeouts: Timeouts {
            accept_no_activity: s(cfg.http.accept_no_activity_timeout_s),
            keep_alive_in: s(cfg.http.keep_alive_no_activity_timeout_in_s),
            keep_alive_out: s(cfg.http.keep_alive_no_activity_timeout_out_s),
            transaction_no_activity_out: s(cfg.http.transaction_no_activity_timeout_out_s),
            transaction_no_activity_in: s(cfg.http.transaction_no_activity_timeout_in_s),
            connect: s(cfg.http.connect_attempts_timeout_s),
            default_inactivity: s(cfg.net.default_inactivity_timeout_s),
        },
        server: SERVER.to_string(),
        via: format!("1.1 {SERVER}"),
        underscores: cfg.http.underscores_in_headers,
        cache_http: cfg.http.cache_http,
        max_doc_size: max_doc_size(cfg),
        max_alts: cfg.cache.max_alts,
    }
}

/// Objects are buffered whole before they are stored, so even "no limit" (0) is bounded:
/// by an eighth of the RAM cache or of the smallest span, whichever is smaller.
fn max_doc_size(cfg: &Config) -> u64 {
    let smallest_span = cfg
        .cache
        .storage
        .iter()
        .map(|s| s.size)
        .min()
        .unwrap_or(u64::MAX);
    let bound = (cfg.cache.ram_cache_size.min(smallest_span) / 8).max(1);
    match cfg.cache.max_doc_size {
        0 => bound,
        n => n.min(bound),
    }
}

/// The settings a reload swaps in, certificates and origin TLS included: every file is
/// read and every certificate parsed here, on the main thread.
fn live(cfg: &Config, tls: &TlsKeep, tls_metrics: &Arc<TlsMetrics>) -> Result<Live> {
    Ok(Live {
        remap: Arc::new(RemapTable::build(&cfg.remap)?),
        allow: Arc::new(cfg.stats.allow_ip.clone()),
        origin_max: cfg.http.per_server_connection_max,
        connect_ports: Arc::new(cfg.http.connect_ports.clone()),
        tls_server: TlsServer::load(cfg, tls)?,
        tls_client: TlsClient::load(cfg, tls, tls_metrics)?,
    })
}

fn role(spec: &config::PortSpec) -> Result<PortRole> {
    match &spec.kind {
        PortKind::Http => Ok(PortRole::Http),
        PortKind::Blind { tunnel } => {
            let (host, port) = crate::http::remap::split_authority(tunnel)
                .and_then(|(h, p)| Some((h, p?)))
                .ok_or_else(|| {
                    Error::config(format!("port {spec}: tunnel {tunnel:?} is not HOST:PORT"))
                })?;
            crate::http::remap::resolve(&host, port)
                .map(PortRole::Blind)
                .map_err(|e| e.into_config(format_args!("port {spec}")))
        }
    }
}

/// Sets `proxy.process.ssl.certificates_loaded`.
fn note_certificates(live: &Live, m: &TlsMetrics) {
    let n = live.tls_server.as_ref().map_or(0, |s| s.certificates());
    m.certificates.set(n as i64);
}

/// A running daemon's state, owned by the main thread.
struct Daemon {
    cfg: Config,
    source: ConfigSource,
    events: Arc<EventProcessor>,
    net: NetProcessor,
    registry: Arc<Registry>,
    http: Arc<HttpShared>,
    ports: Vec<Port>,
    /// TLS state that outlives reloads (ticket key, session cache).
    tls: TlsKeep,
    tls_metrics: Arc<TlsMetrics>,
}

/// Runs the daemon until it is stopped; returns the exit code.
pub fn run(cfg: Config, source: ConfigSource) -> i32 {
    match start(cfg, source) {
        Ok((mut d, rx, _ctl)) => d.control_loop(&rx),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

fn start(cfg: Config, source: ConfigSource) -> Result<(Daemon, Receiver<Control>, CtlServer)> {
    log::info!("{SERVER} starting (configuration: {})", cfg.origin);
    for (record, by) in &cfg.env_overrides {
        log::info!("{record} overridden by {by}");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let events = Arc::new(
        EventProcessor::start(&EventProcessorOptions {
            threads: cfg.exec_thread.threads(cores),
            pin_cores: cfg.exec_thread.affinity == config::Affinity::Core,
            name: "ET_NET".into(),
        })
        .map_err(|e| Error::io("cannot start event threads", &e))?,
    );
    let registry = Registry::new();
    let net = NetProcessor::new(events.clone(), registry.clone(), &tuning(&cfg));
    let tls = TlsKeep::new()?;
    let tls_metrics = TlsMetrics::new(&registry);
    let first = live(&cfg, &tls, &tls_metrics)?;
    note_certificates(&first, &tls_metrics);
    let http = HttpShared::new(settings(&cfg), first, registry.clone());
    if !cfg.log.access_log.as_os_str().is_empty() {
        http.open_access_log(&cfg.log.access_log)
            .map_err(|e| e.within("proxy.config.log.access_log"))?;
    }
    for t in events.threads() {
        t.schedule_every(Event::new(crate::http::session::sweep), SWEEP_PERIOD);
    }

    // Bind every port now, so a taken port fails start-up before anything accepts.
    let listen = listen_options(&cfg);
    let mut inherited = ports::systemd_listeners();
    let mut bound = Vec::new();
    for spec in &cfg.http.server_ports {
        let listener = ports::open(spec, &listen, &mut inherited)?;
        let acceptor = Arc::new(HttpAcceptor {
            shared: http.clone(),
            role: role(spec)?,
            ssl: spec.ssl,
        });
        bound.push(Port::new(
            spec.clone(),
            listener,
            plan(&cfg, spec),
            acceptor,
        ));
    }
    for l in inherited {
        log::warn!(
            "systemd socket {} matches no configured port; closing it",
            l.local_addr()
        );
    }

    let (tx, rx) = mpsc::channel();
    let tx_cache = tx.clone();
    let ctl = start_ctl(&cfg, registry.clone(), tx.clone())?;
    signals::spawn(tx).map_err(|e| Error::io("cannot start the signal thread", &e))?;

    let mut d = Daemon {
        cfg,
        source,
        events,
        net,
        registry,
        http,
        ports: bound,
        tls,
        tls_metrics,
    };
    let gate = Arc::new(StartGate::new());
    start_cache(&d.cfg, &d.http, &d.registry, &gate, tx_cache)?;
    if gate.startup_done() {
        d.start_ports()?;
    }
    Ok((d, rx, ctl))
}

/// SPEC §5: initialise the cache off the main thread. With `wait_for_cache` 0 the ports
/// do not wait for it; otherwise the cache-ready callback is the gate's other party.
/// Levels 2 and 3 turn failed spans into a fatal start-up error naming them.
fn start_cache(
    cfg: &Config,
    http: &Arc<HttpShared>,
    registry: &Arc<Registry>,
    gate: &Arc<StartGate>,
    tx: Sender<Control>,
) -> Result<()> {
    let level = cfg.http.wait_for_cache.level();
    let spans: Vec<(PathBuf, u64)> = cfg
        .cache
        .storage
        .iter()
        .map(|s| (s.path.clone(), s.size))
        .collect();
    if level == 0 {
        // Ports open at once; the cache joins when it is ready.
        let _ = gate.cache_ready();
    } else if !spans.is_empty() {
        log::info!(
            "waiting for cache ({} spans) before opening ports",
            spans.len()
        );
    }
    let (http, registry, gate) = (http.clone(), registry.clone(), gate.clone());
    let ram = cfg.cache.ram_cache_size;
    let done = move |cache: Arc<crate::cache::Cache>, statuses: Vec<crate::cache::SpanStatus>| {
        let mut failed = Vec::new();
        for st in &statuses {
            match &st.result {
                Ok((objects, bytes)) => log::info!(
                    "cache span {}: {objects} objects, {bytes} bytes, initialised in {} ms",
                    st.path.display(),
                    st.elapsed.as_millis()
                ),
                Err(why) => {
                    log::error!("cache span {} failed: {why}", st.path.display());
                    failed.push(format!("{}: {why}", st.path.display()));
                }
            }
        }
        let online = statuses.len() - failed.len();
        registry
            .gauge("proxy.process.cache.spans_online")
            .set(online as i64);
        registry
            .gauge("proxy.process.cache.spans_failed")
            .set(failed.len() as i64);
        let fatal = match level {
            2 if !statuses.is_empty() && online == 0 => Some(Error::config(format!(
                "wait_for_cache = 2 and no cache span is usable: {}",
                failed.join("; ")
            ))),
            3 if !failed.is_empty() => Some(Error::config(format!(
                "wait_for_cache = 3 and a cache span failed: {}",
                failed.join("; ")
            ))),
            _ => None,
        };
        if let Some(e) = fatal {
            let _ = tx.send(Control::Fatal(e));
            return;
        }
        http.install_cache(cache);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        registry
            .gauge("proxy.process.proxy.cache_ready_time")
            .set(now);
        log::info!(
            "cache ready ({online} spans online, {} failed)",
            failed.len()
        );
        if gate.cache_ready() {
            let _ = tx.send(Control::StartPorts);
        }
    };
    crate::cache::open_async(spans, ram, done)
        .map(drop)
        .map_err(|e| Error::io("cannot start cache initialisation", &e))
}

fn start_ctl(cfg: &Config, registry: Arc<Registry>, tx: Sender<Control>) -> Result<CtlServer> {
    let tx = std::sync::Mutex::new(tx);
    let handler: ctl::Handler = Arc::new(move |args: &[String]| {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["metric", "get", names @ ..] if !names.is_empty() => {
                let mut out = String::new();
                let mut code = 0;
                for n in names {
                    match registry.value(n) {
                        Some(v) => out.push_str(&format!("{n} {v}\n")),
                        None => {
                            out.push_str(&format!("{n}: no such metric\n"));
                            code = 1;
                        }
                    }
                }
                (code, out)
            }
            ["metric", "match", pattern] => match regex::Regex::new(pattern) {
                Ok(re) => {
                    let out: String = registry
                        .snapshot()
                        .into_iter()
                        .filter(|(n, _)| re.is_match(n))
                        .map(|(n, v)| format!("{n} {v}\n"))
                        .collect();
                    (0, out)
                }
                Err(e) => (2, format!("bad regex: {e}\n")),
            },
            ["config", "reload"] => {
                let (rtx, rrx) = mpsc::channel();
                let sent = tx
                    .lock()
                    .map(|t| t.send(Control::Reload(Some(rtx))).is_ok())
                    .unwrap_or(false);
                match sent
                    .then(|| rrx.recv_timeout(Duration::from_secs(60)).ok())
                    .flatten()
                {
                    Some(reply) => reply,
                    None => (1, "the daemon did not answer\n".into()),
                }
            }
            ["server", "stop"] => {
                let _ = tx.lock().map(|t| t.send(Control::Stop));
                (0, "stopping\n".into())
            }
            _ => (2, format!("unknown command: {}\n", words.join(" "))),
        }
    });
    CtlServer::start(&cfg.admin.socket, handler).map_err(|e| {
        Error::io(
            format_args!("admin socket {}", cfg.admin.socket.display()),
            &e,
        )
    })
}

impl Daemon {
    /// Starts every port's acceptors. Called exactly once, through the start gate.
    fn start_ports(&mut self) -> Result<()> {
        let sock = sock_options(&self.cfg);
        let mut described = Vec::new();
        for p in &mut self.ports {
            let plan = p.plan.clone();
            p.start(&self.net, plan, &sock)?;
            let kind = match (&p.spec.kind, p.spec.ssl) {
                (PortKind::Http, false) => "http".to_string(),
                (PortKind::Http, true) => "https".to_string(),
                (PortKind::Blind { tunnel }, false) => format!("blind→{tunnel}"),
                (PortKind::Blind { tunnel }, true) => format!("blind+ssl→{tunnel}"),
            };
            described.push(format!(
                "{} {} {}={}",
                kind,
                p.plan.describe(),
                p.label,
                p.addr()
            ));
        }
        self.registry
            .gauge("proxy.process.proxy.ports_ready")
            .set(1);
        log::info!("ports accepting: {}", described.join(", "));
        Ok(())
    }

    fn control_loop(&mut self, rx: &Receiver<Control>) -> i32 {
        loop {
            match rx.recv() {
                Ok(Control::Reload(reply)) => {
                    let (code, text) = self.reload();
                    if let Some(r) = reply {
                        let _ = r.send((code, text));
                    }
                }
                Ok(Control::StartPorts) => {
                    if let Err(e) = self.start_ports() {
                        log::error!("{e}");
                        self.stop(rx);
                        return 1;
                    }
                }
                Ok(Control::Fatal(e)) => {
                    log::error!("{e}");
                    self.stop(rx);
                    return 1;
                }
                Ok(Control::Stop) | Err(_) => return self.stop(rx),
            }
        }
    }

    /// SPEC §7 reload: a bad file changes nothing; (R) records apply live; the rest are
    /// named as needing a restart.
    fn reload(&mut self) -> (i32, String) {
        let new = match self.source.load() {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload refused; the running configuration stays:\n{e}");
                return (
                    1,
                    format!("reload refused; the running configuration stays:\n{e}\n"),
                );
            }
        };
        let live = match live(&new, &self.tls, &self.tls_metrics) {
            Ok(l) => l,
            Err(e) => {
                if !new.ssl_multicert.is_empty() {
                    self.tls_metrics.cert_reload_failures.inc();
                }
                log::error!("reload refused; the running configuration stays: {e}");
                return (
                    1,
                    format!("reload refused; the running configuration stays: {e}\n"),
                );
            }
        };
        note_certificates(&live, &self.tls_metrics);
        if live.tls_server.is_some() {
            self.tls_metrics.cert_reloads.inc();
        }
        let restart = self.cfg.restart_required_changes(&new);
        self.net.set_tuning(&tuning(&new));
        self.http.set_live(live);
        self.http.reopen_access_log();
        let sock = sock_options(&self.cfg);
        let mut swapped = Vec::new();
        let mut errors = Vec::new();
        for p in &mut self.ports {
            let Some(spec) = new
                .http
                .server_ports
                .iter()
                .find(|s| s.same_listener(&p.spec))
            else {
                continue;
            };
            let want = plan(&new, spec);
            if want != p.plan {
                match p.start(&self.net, want, &sock) {
                    Ok(()) => swapped.push(format!("{} {}", p.label, p.plan.describe())),
                    Err(e) => errors.push(e),
                }
            }
        }
        // Keep everything that applied; restart-only records stay as they were.
        let mut applied = self.cfg.clone();
        applied.accept_threads = new.accept_threads;
        applied.net.accept_period_ms = new.net.accept_period_ms;
        applied.net.additional_accepts = new.net.additional_accepts;
        applied.net.throttle_delay_ms = new.net.throttle_delay_ms;
        applied.net.connections_throttle = new.net.connections_throttle;
        applied.net.throttle_mode = new.net.throttle_mode;
        applied.stats.allow_ip = new.stats.allow_ip.clone();
        applied.remap = new.remap.clone();
        applied.ssl_multicert = new.ssl_multicert.clone();
        applied.ssl.client_verify_server_policy = new.ssl.client_verify_server_policy;
        applied.ssl.client_ca_cert_filename = new.ssl.client_ca_cert_filename.clone();
        for p in &mut applied.http.server_ports {
            if let Some(s) = new.http.server_ports.iter().find(|s| s.same_listener(p)) {
                p.accept_threads = s.accept_threads;
            }
        }
        self.cfg = applied;
        let mut text = String::from("reloaded\n");
        if !swapped.is_empty() {
            text.push_str(&format!("acceptors swapped: {}\n", swapped.join(", ")));
        }
        if !restart.is_empty() {
            text.push_str(&format!(
                "needs a restart to change: {}\n",
                restart.join(", ")
            ));
            log::warn!("reload: needs a restart to change: {}", restart.join(", "));
        }
        log::info!(
            "configuration reloaded{}",
            if swapped.is_empty() {
                String::new()
            } else {
                format!("; acceptors swapped: {}", swapped.join(", "))
            }
        );
        if errors.is_empty() {
            (0, text)
        } else {
            for e in &errors {
                log::error!("reload: {e}");
            }
            let errors: Vec<String> = errors.iter().map(Error::to_string).collect();
            (1, format!("{text}errors:\n{}\n", errors.join("\n")))
        }
    }

    /// SPEC §7 stop: stop accepting at once, let transactions finish up to the shutdown
    /// timeout (a second stop cuts it short), close the rest, exit 0.
    fn stop(&mut self, rx: &Receiver<Control>) -> i32 {
        log::info!("stopping: no longer accepting; draining transactions");
        for p in &mut self.ports {
            p.stop();
        }
        for p in &self.ports {
            p.wait_stopped(Duration::from_millis(500));
        }
        self.http.start_draining();
        let deadline = Instant::now() + Duration::from_secs(self.cfg.stop.shutdown_timeout_s);
        loop {
            let active = self.http.active_transactions();
            if active <= 0 {
                break;
            }
            if Instant::now() >= deadline {
                log::warn!("shutdown timeout: closing {active} transactions still in flight");
                break;
            }
            if let Ok(Control::Stop) = rx.recv_timeout(Duration::from_millis(20)) {
                log::warn!("second stop: exiting now");
                break;
            }
        }
        self.events.shutdown();
        // Cache writes are queued on the spans' I/O threads: let them land.
        if let Err(e) = self.http.flush_cache() {
            log::warn!("cache: flushing the spans at stop: {e}");
        }
        self.http.flush_access_log();
        log::info!("stopped");
        0
    }
}
