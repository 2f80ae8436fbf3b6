//! The daemon's life: the ATS start-up sequence, the control loop (signals and `ctl`),
//! live reload and graceful stop. Everything here runs on the main thread except what it
//! hands to the event threads, the `[CTL]` thread and the `[SIGNALS]` thread.
//!
//! Start-up: config → ET_NET threads → bind every port (a taken port fails fast, exit 1)
//! → cache → ports start exactly once, when both start-up and the cache are done
//! ([`StartGate`]) → `proxy.process.proxy.ports_ready` and one "ports accepting" line.
//! A process started by an upgrade takes its sockets from the old one instead of binding
//! and asks it for the cache spans first; `daemon/handover.rs` holds both sides of an
//! upgrade, the drain every stop shares and `ctl port`.

mod handover;

use crate::ctl::{self, CtlServer};
use crate::error::{Error, Result};
use crate::gate::StartGate;
use crate::http::parent::{via::ViaEntry, ParentTable};
use crate::http::{
    remap::RemapTable, HttpAcceptor, HttpSettings, HttpShared, Live, PortRole, Timeouts,
};
use crate::ports::{self, AcceptPlan, Port};
use crate::signals::{self, Control};
use crate::tls::{TlsClient, TlsKeep, TlsMetrics, TlsServer};
use crate::upgrade::OldProcess;
use config::{Config, PortKind};
use iocore::{
    Event, EventProcessor, EventProcessorOptions, ListenOptions, NetProcessor, NetTuning, Registry,
    SockOptions, ThrottleMode,
};
use std::ffi::OsString;
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
        accept_coalesce: Duration::from_micros(cfg.net.accept_coalesce_us),
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
        notsent_lowat: cfg.net.sock_notsent_lowat_in as usize,
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
    let instance = ViaEntry::new(&cfg.proxy_name, SERVER);
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
        via: instance.entry.clone(),
        instance,
        underscores: cfg.http.underscores_in_headers,
        cache_http: cfg.http.cache_http,
        max_doc_size: max_doc_size(cfg),
        fill_read_ahead: usize::try_from(cfg.cache.fill_read_ahead).unwrap_or(usize::MAX),
        max_alts: cfg.cache.max_alts,
        send_batch: cfg.net.send_batch,
    }
}

/// The largest object stored (`cache.max_doc_size`). Objects are buffered whole before
/// they are stored, so even "no limit" (0) is bounded, by an eighth of the RAM cache or
/// of the smallest span, whichever is smaller: the memory a fill may hold follows the
/// memory the operator gave the cache. With no RAM cache (0, a disk-only cache), an
/// eighth of the smallest span. Any limit is lowered to the largest object the store can
/// keep ([`crate::cache::largest_value`]), with a warning when it is an explicit one.
fn max_doc_size(cfg: &Config) -> u64 {
    let spans: Vec<u64> = cfg.cache.storage.iter().map(|s| s.size).collect();
    let ram = cfg.cache.ram_cache_size;
    let storable = crate::cache::largest_value(&spans, ram);
    match cfg.cache.max_doc_size {
        0 => {
            let smallest = spans.iter().min().copied();
            let base = match (ram, smallest) {
                (0, Some(span)) => span,
                (ram, span) => span.map_or(ram, |span| span.min(ram)),
            };
            (base / 8).min(storable).max(1)
        }
        n if n > storable => {
            let limit = storable.max(1);
            let why = match spans.iter().min() {
                Some(smallest) => format!(
                    "the largest object one record of the smallest span ({smallest} bytes) \
                     and the disk write queue hold"
                ),
                None => "the size of the RAM cache (ram_cache.size), the only store without spans"
                    .to_string(),
            };
            log::warn!(
                "proxy.config.cache.max_doc_size = {n} is more than the cache can store: \
                 objects above {limit} bytes ({why}) stream through uncached"
            );
            limit
        }
        n => n,
    }
}

/// The settings a reload swaps in, certificates and origin TLS included: every file is
/// read and every certificate parsed here, on the main thread; `previous` parents keep
/// their health.
fn live(
    cfg: &Config,
    registry: &Registry,
    previous: &ParentTable,
    tls: &TlsKeep,
    tls_metrics: &Arc<TlsMetrics>,
) -> Result<Live> {
    Ok(Live {
        remap: Arc::new(RemapTable::build(&cfg.remap)?),
        allow: Arc::new(cfg.stats.allow_ip.clone()),
        origin_max: cfg.http.per_server_connection_max,
        connect_ports: Arc::new(cfg.http.connect_ports.clone()),
        cache_policy: Arc::new(crate::http::caching::CachePolicy {
            heuristic_min: cfg.http.heuristic_min_lifetime_s,
            heuristic_max: cfg.http.heuristic_max_lifetime_s,
            lm_factor: cfg.http.heuristic_lm_factor,
            max_stale_age: cfg.http.max_stale_age_s,
            targeted: cfg
                .http
                .targeted_cache_control_headers
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
            background_fill_threshold: cfg.http.background_fill_threshold,
        }),
        purge_allow: Arc::new(cfg.http.purge_allow_ip.clone()),
        parents: Arc::new(ParentTable::build(cfg, registry, previous)?),
        proxy_protocol_allow: Arc::new(cfg.http.proxy_protocol_allowlist.clone()),
        tls_server: TlsServer::load(cfg, tls)?,
        tls_client: TlsClient::load(cfg, tls, tls_metrics)?,
    })
}

fn role(spec: &config::PortSpec) -> Result<PortRole> {
    match &spec.kind {
        PortKind::Http if spec.pp => Ok(PortRole::HttpProxyProtocol),
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
    /// Whether the ports started.
    ports_started: bool,
    /// The admin socket: None before an upgrade's new process serves, and after this
    /// process handed it over.
    ctl: Option<CtlServer>,
    ctl_handler: ctl::Handler,
    /// Where the control messages come from (for the upgrade threads).
    tx: Sender<Control>,
    /// The binary and arguments this process started with, for an upgrade.
    exe: PathBuf,
    args: Vec<OsString>,
    /// Both sides of an upgrade.
    up: handover::Upgrade,
    /// TLS state that outlives reloads (ticket key, session cache).
    tls: TlsKeep,
    tls_metrics: Arc<TlsMetrics>,
}

/// Runs the daemon until it is stopped; returns the exit code. `old` is the link to the
/// process that started this one for an upgrade.
pub fn run(cfg: Config, source: ConfigSource, old: Option<OldProcess>) -> i32 {
    let mut old = old;
    match start(cfg, source, &mut old) {
        Ok((mut d, rx)) => d.control_loop(&rx),
        Err(e) => {
            log::error!("{e}");
            if let Some(link) = &old {
                link.fail(&e.to_string());
            }
            1
        }
    }
}

fn start(
    cfg: Config,
    source: ConfigSource,
    old: &mut Option<OldProcess>,
) -> Result<(Daemon, Receiver<Control>)> {
    // An upgrade starts the binary at this path, whatever it then holds.
    let exe =
        crate::upgrade::started_from().map_err(|e| Error::io("cannot find this binary", &e))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
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
    let mut up = handover::Upgrade::default();
    if let Some(o) = old.as_ref() {
        log::info!(
            "started by an upgrade of pid {}: taking over {} sockets",
            o.old_pid,
            o.sockets.len()
        );
        // Counters go on from the old process's values, before anything counts.
        up.carried.apply(&registry, &o.counts);
    }
    let net = NetProcessor::new(events.clone(), registry.clone(), &tuning(&cfg));
    let tls = TlsKeep::new()?;
    let tls_metrics = TlsMetrics::new(&registry);
    let first = live(&cfg, &registry, &ParentTable::default(), &tls, &tls_metrics)?;
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
    let mut handed = ports::Handed::default();
    if let Some(o) = old.as_ref() {
        for s in &o.sockets {
            handed.add(&s.key, s.index, s.fd)?;
        }
    }
    let mut bound = Vec::new();
    let keys = ports::socket_keys(&cfg.http.server_ports);
    for (spec, key) in cfg.http.server_ports.iter().zip(keys) {
        let sockets = ports::open(spec, &key, &listen, &mut inherited, &mut handed)?;
        let acceptor = Arc::new(HttpAcceptor {
            shared: http.clone(),
            role: role(spec)?,
            ssl: spec.ssl,
        });
        let mut port = Port::new(spec.clone(), key, sockets, plan(&cfg, spec), acceptor);
        if old.as_ref().is_some_and(|o| o.disabled.contains(&port.key)) {
            port.enabled = false;
        }
        bound.push(port);
    }
    handed.close_rest();
    for l in inherited {
        log::warn!(
            "systemd socket {} matches no configured port; closing it",
            l.local_addr()
        );
    }

    let (tx, rx) = mpsc::channel();
    let tx_cache = tx.clone();
    let ctl_handler = ctl_handler(&cfg, registry.clone(), tx.clone());
    let ctl = match old.as_ref() {
        // The admin socket is the old process's until it hands over.
        Some(o) => {
            up.admin = Some(handover::adopt_admin(o.admin_fd)?);
            up.old_pid_file = o.pid_file.clone();
            None
        }
        None => Some(start_ctl(&cfg, ctl_handler.clone())?),
    };
    up.serving = old.is_none();
    signals::spawn(tx.clone()).map_err(|e| Error::io("cannot start the signal thread", &e))?;

    let mut d = Daemon {
        cfg,
        source,
        events,
        net,
        registry,
        http,
        ports: bound,
        ports_started: false,
        ctl,
        ctl_handler,
        tx,
        exe,
        args,
        up,
        tls,
        tls_metrics,
    };
    if let Some(o) = old.as_mut() {
        if !d.cfg.cache.storage.is_empty() {
            // A span is never written by two processes: the old one flushes and
            // releases its spans before this one opens them.
            o.want_spans()?;
        }
    }
    d.up.old = old.take();
    let gate = Arc::new(StartGate::new());
    start_cache(&d.cfg, &d.http, &d.registry, &gate, tx_cache)?;
    if gate.startup_done() {
        d.start_ports()?;
    }
    Ok((d, rx))
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
    // Present from the start, 0 until the cache is ready: with wait_for_cache = 0 the
    // ports may answer a stats request first, and a metric that appears late reads as
    // missing to a scraper.
    for name in [
        "proxy.process.proxy.cache_ready_time",
        "proxy.process.cache.spans_online",
        "proxy.process.cache.spans_failed",
    ] {
        registry.gauge(name);
    }
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

fn ctl_handler(cfg: &Config, registry: Arc<Registry>, tx: Sender<Control>) -> ctl::Handler {
    let tx = std::sync::Mutex::new(tx);
    // `ctl server upgrade` answers once the new process is ready or given up on.
    let upgrade_wait = Duration::from_secs(cfg.upgrade.ready_timeout_s.saturating_add(30));
    let send = move |msg: Control| tx.lock().map(|t| t.send(msg).is_ok()).unwrap_or(false);
    Arc::new(move |args: &[String]| {
        let ask = |msg: Control, rrx: mpsc::Receiver<(i32, String)>, wait: Duration| match send(msg)
            .then(|| rrx.recv_timeout(wait).ok())
            .flatten()
        {
            Some(reply) => reply,
            None => (1, "the daemon did not answer\n".into()),
        };
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
                ask(Control::Reload(Some(rtx)), rrx, Duration::from_secs(60))
            }
            ["server", "stop"] => {
                send(Control::Stop);
                (0, "stopping\n".into())
            }
            ["server", "upgrade"] => {
                let (rtx, rrx) = mpsc::channel();
                ask(Control::Upgrade(Some(rtx)), rrx, upgrade_wait)
            }
            ["port", rest @ ..] if !rest.is_empty() => {
                let (rtx, rrx) = mpsc::channel();
                let rest = rest.iter().map(|w| w.to_string()).collect();
                ask(Control::Port(rest, rtx), rrx, Duration::from_secs(30))
            }
            _ => (2, format!("unknown command: {}\n", words.join(" "))),
        }
    })
}

fn start_ctl(cfg: &Config, handler: ctl::Handler) -> Result<CtlServer> {
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
        let threads = self.events.threads().len();
        let mut described = Vec::new();
        for p in &mut self.ports {
            let plan = p.plan.clone();
            p.start(&self.net, plan, &sock, threads)?;
            let kind = match (&p.spec.kind, p.spec.ssl, p.spec.pp) {
                (PortKind::Http, false, false) => "http".to_string(),
                (PortKind::Http, false, true) => "http+pp".to_string(),
                (PortKind::Http, true, false) => "https".to_string(),
                (PortKind::Http, true, true) => "https+pp".to_string(),
                (PortKind::Blind { tunnel }, false, _) => format!("blind→{tunnel}"),
                (PortKind::Blind { tunnel }, true, _) => format!("blind+ssl→{tunnel}"),
            };
            described.push(format!(
                "{} {} {}={}{}",
                kind,
                p.plan.describe(),
                p.label,
                p.addr(),
                if p.enabled { "" } else { " (disabled)" }
            ));
        }
        self.ports_started = true;
        self.registry
            .gauge("proxy.process.proxy.ports_ready")
            .set(1);
        log::info!("ports accepting: {}", described.join(", "));
        self.ports_ready();
        Ok(())
    }

    fn control_loop(&mut self, rx: &Receiver<Control>) -> i32 {
        loop {
            let msg = match self.up.deadline() {
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(m) => Ok(m),
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.upgrade_timed_out();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
                    }
                }
                None => rx.recv().map_err(drop),
            };
            match msg {
                Ok(Control::Reload(reply)) => self.reload_or_defer(reply),
                Ok(Control::StartPorts) => {
                    if let Err(e) = self.start_ports() {
                        log::error!("{e}");
                        if let Some(link) = &self.up.old {
                            link.fail(&e.to_string());
                        }
                        self.stop(rx);
                        return 1;
                    }
                }
                Ok(Control::Fatal(e)) => {
                    log::error!("{e}");
                    if let Some(link) = &self.up.old {
                        link.fail(&e.to_string());
                    }
                    self.stop(rx);
                    return 1;
                }
                Ok(Control::Upgrade(reply)) => self.start_upgrade(reply),
                Ok(Control::Link(event)) => {
                    if let Some(code) = self.on_link(event, rx) {
                        return code;
                    }
                }
                Ok(Control::Port(words, reply)) => {
                    let _ = reply.send(self.port_command(&words));
                }
                Ok(Control::CacheReattached) => self.up.reattaching = false,
                Ok(Control::Stop) | Err(()) => return self.stop(rx),
            }
        }
    }

    /// A reload now, systemd told around it, answered to `reply` if someone asked.
    fn reload_and_answer(&mut self, reply: Option<Sender<(i32, String)>>) {
        crate::notify::reloading("reloading the configuration");
        let (code, text) = self.reload();
        crate::notify::ready();
        if let Some(r) = reply {
            let _ = r.send((code, text));
        }
    }

    /// SPEC §7 reload: a bad file changes nothing; (R) records apply live; the rest are
    /// named as needing a restart.
    fn reload(&mut self) -> (i32, String) {
        // First, whatever becomes of the file: a rotation script's signal reopens the
        // access log even when the reload is refused (its path needs a restart to change).
        self.http.reopen_access_log();
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
        let live = match live(
            &new,
            &self.registry,
            &self.http.live().parents,
            &self.tls,
            &self.tls_metrics,
        ) {
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
        (self.http.live().parents).retire_removed(&live.parents, &self.registry);
        self.http.set_live(live);
        let sock = sock_options(&self.cfg);
        let threads = self.events.threads().len();
        let mut swapped = Vec::new();
        let mut errors = Vec::new();
        // Matched by rank, not by the first equal spec: with `"0 0:accept_threads=2"` both
        // ports would otherwise get the first one's accept threads.
        let running: Vec<config::PortSpec> = self.ports.iter().map(|p| p.spec.clone()).collect();
        let matched = config::match_listeners(&running, &new.http.server_ports);
        for (p, spec) in self.ports.iter_mut().zip(matched) {
            let Some(spec) = spec else {
                continue;
            };
            let want = plan(&new, spec);
            if want != p.plan {
                match p.start(&self.net, want, &sock, threads) {
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
        applied.net.accept_coalesce_us = new.net.accept_coalesce_us;
        applied.net.throttle_delay_ms = new.net.throttle_delay_ms;
        applied.net.connections_throttle = new.net.connections_throttle;
        applied.net.throttle_mode = new.net.throttle_mode;
        applied.stats.allow_ip = new.stats.allow_ip.clone();
        applied.remap = new.remap.clone();
        applied.parents = new.parents.clone();
        applied.http.parent_proxy = new.http.parent_proxy.clone();
        applied.http.proxy_protocol_allowlist = new.http.proxy_protocol_allowlist.clone();
        applied.http.per_server_connection_max = new.http.per_server_connection_max;
        applied.http.connect_ports = new.http.connect_ports.clone();
        applied.http.heuristic_min_lifetime_s = new.http.heuristic_min_lifetime_s;
        applied.http.heuristic_max_lifetime_s = new.http.heuristic_max_lifetime_s;
        applied.http.heuristic_lm_factor = new.http.heuristic_lm_factor;
        applied.http.max_stale_age_s = new.http.max_stale_age_s;
        applied.http.background_fill_threshold = new.http.background_fill_threshold;
        applied.http.targeted_cache_control_headers =
            new.http.targeted_cache_control_headers.clone();
        applied.http.purge_allow_ip = new.http.purge_allow_ip.clone();
        applied.ssl_multicert = new.ssl_multicert.clone();
        applied.ssl.client_verify_server_policy = new.ssl.client_verify_server_policy;
        applied.ssl.client_ca_cert_filename = new.ssl.client_ca_cert_filename.clone();
        let matched = config::match_listeners(&applied.http.server_ports, &new.http.server_ports);
        for (p, s) in applied.http.server_ports.iter_mut().zip(matched) {
            if let Some(s) = s {
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

    /// SPEC §7 stop: stop accepting and close the listening sockets at once (a new
    /// connect is refused), let transactions finish up to the shutdown timeout (a second
    /// stop cuts it short), close the rest, exit 0.
    fn stop(&mut self, rx: &Receiver<Control>) -> i32 {
        self.abort_upgrade_for_stop();
        crate::notify::stopping();
        log::info!("stopping: no longer accepting; draining transactions");
        self.http.start_draining();
        for p in &mut self.ports {
            p.stop();
        }
        for p in &mut self.ports {
            p.wait_stopped(Duration::from_millis(500));
        }
        // What waits in the queues is accepted and answered; then the sockets close.
        let sock = sock_options(&self.cfg);
        let drains: Vec<iocore::Action> = self
            .ports
            .drain(..)
            .flat_map(|p| p.close(&self.net, &sock))
            .collect();
        for a in &drains {
            if !a.wait_done(Duration::from_millis(200)) {
                a.cancel();
            }
        }
        let (drained, cut) = self.drain_connections(rx, true);
        log::info!(
            "stop: {drained} transactions drained, {} cut at the shutdown timeout ({} connections)",
            cut.transactions,
            cut.connections
        );
        self.events.shutdown();
        // Cache writes are queued on the spans' I/O threads: let them land.
        if let Err(e) = self.http.flush_cache() {
            log::warn!("cache: flushing the spans at stop: {e}");
        }
        self.http.flush_access_log();
        crate::pid_file::remove(&self.cfg.pid_file);
        log::info!("stopped");
        0
    }
}
