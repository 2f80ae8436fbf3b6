//! The `turnstile` command: run the daemon, check a configuration, or control a running
//! daemon through its admin socket (SPEC §2).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use turnstile::daemon::{self, ConfigSource};

#[derive(Parser)]
#[command(
    name = "turnstile",
    version,
    about = "A Traffic Server-style HTTP caching proxy"
)]
struct Cli {
    /// records.toml to read (default: ./records.toml if present, else the embedded default).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Dedicated accept threads per port (proxy.config.accept_threads); 0 = event threads.
    #[arg(short = 'a', long = "accept-threads")]
    accept_threads: Option<u32>,
    /// ET_NET event threads (turns autoconfig off).
    #[arg(long)]
    threads: Option<u32>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the effective one as TOML.
    Check,
    /// Talk to the running daemon through its admin socket.
    Ctl {
        #[command(subcommand)]
        what: Ctl,
    },
}

#[derive(Subcommand)]
enum Ctl {
    /// Metrics.
    Metric {
        #[command(subcommand)]
        op: MetricOp,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        op: ConfigOp,
    },
    /// The server process.
    Server {
        #[command(subcommand)]
        op: ServerOp,
    },
    /// Ports: list them; stop or resume accepting on one (its socket kept).
    Port {
        #[command(subcommand)]
        op: PortOp,
    },
}

#[derive(Subcommand)]
enum PortOp {
    /// Print each port: label, address, accept mode, enabled or disabled.
    List,
    /// Stop accepting on PORT; its socket stays open (connects wait in its backlog).
    Disable { port: String },
    /// Accept again on PORT, on the same socket.
    Enable { port: String },
}

#[derive(Subcommand)]
enum MetricOp {
    /// Print "NAME VALUE" for each metric.
    Get {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print every metric whose name matches REGEX.
    Match { regex: String },
}

#[derive(Subcommand)]
enum ConfigOp {
    /// Re-read the configuration (same as SIGHUP).
    Reload,
}

#[derive(Subcommand)]
enum ServerOp {
    /// Stop gracefully (same as SIGTERM).
    Stop,
    /// Zero-downtime binary upgrade (same as SIGUSR2).
    Upgrade,
}

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask.
    turnstile::signals::block();
    turnstile::log::init();
    let cli = Cli::parse();
    // Started by an upgrade: the old process's link, read before any thread exists.
    let old = match cli.command {
        None => turnstile::upgrade::OldProcess::from_env(),
        Some(_) => None,
    };
    let old = match old {
        Some(Ok(link)) => Some(link),
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
        None => None,
    };
    let mut overrides = Vec::new();
    if let Some(n) = cli.accept_threads {
        overrides.push((
            "proxy.config.accept_threads".into(),
            n.to_string(),
            "--accept-threads".into(),
        ));
    }
    if let Some(n) = cli.threads {
        overrides.push((
            "proxy.config.exec_thread.autoconfig.enabled".into(),
            "false".into(),
            "--threads".into(),
        ));
        overrides.push((
            "proxy.config.exec_thread.limit".into(),
            n.to_string(),
            "--threads".into(),
        ));
    }
    let source = ConfigSource {
        path: cli.config.clone(),
        overrides,
    };
    let cfg = match (source.load(), &cli.command) {
        (Ok(c), _) => c,
        // ctl needs only the admin socket: reloading a broken file must still reach the
        // daemon, which refuses it and says why.
        (Err(_), Some(Command::Ctl { .. })) => config::load_record_leniently(
            cli.config.as_deref(),
            "proxy.config.admin.socket",
            &|var| std::env::var(var).ok(),
        ),
        (Err(e), _) => {
            eprintln!("{e}");
            if let Some(link) = &old {
                link.fail(&e.to_string());
            }
            return ExitCode::from(2);
        }
    };
    match cli.command {
        None => {
            // Certificates, keys and the origin CA file are configuration too: a bad one
            // is a configuration error (2), as `check` says, not a start-up failure.
            if let Err(e) = turnstile::tls::check(&cfg) {
                eprintln!("{e}");
                if let Some(link) = &old {
                    link.fail(&e.to_string());
                }
                return ExitCode::from(2);
            }
            ExitCode::from(daemon::run(cfg, source, old) as u8)
        }
        Some(Command::Check) => {
            // Certificates, keys and the origin CA file are part of the configuration.
            if let Err(e) = turnstile::tls::check(&cfg) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            print!("{}", cfg.to_toml());
            ExitCode::SUCCESS
        }
        Some(Command::Ctl { what }) => {
            let args: Vec<String> = match what {
                Ctl::Metric {
                    op: MetricOp::Get { names },
                } => ["metric", "get"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(names)
                    .collect(),
                Ctl::Metric {
                    op: MetricOp::Match { regex },
                } => vec!["metric".into(), "match".into(), regex],
                Ctl::Config {
                    op: ConfigOp::Reload,
                } => vec!["config".into(), "reload".into()],
                Ctl::Server { op: ServerOp::Stop } => vec!["server".into(), "stop".into()],
                Ctl::Server {
                    op: ServerOp::Upgrade,
                } => vec!["server".into(), "upgrade".into()],
                Ctl::Port { op } => match op {
                    PortOp::List => vec!["port".into(), "list".into()],
                    PortOp::Disable { port } => vec!["port".into(), "disable".into(), port],
                    PortOp::Enable { port } => vec!["port".into(), "enable".into(), port],
                },
            };
            // An upgrade answers once the new process is ready, or given up on.
            let timeout = Duration::from_secs(cfg.upgrade.ready_timeout_s.saturating_add(60));
            match turnstile::ctl::call(&cfg.admin.socket, &args, timeout) {
                Ok((code, text)) => {
                    if code == 0 {
                        print!("{text}");
                    } else {
                        eprint!("{text}");
                    }
                    ExitCode::from(code.clamp(0, 255) as u8)
                }
                Err(e) => {
                    eprintln!("{e}");
                    // Arguments the request cannot carry are a usage error (SPEC §2).
                    match e.kind {
                        turnstile::error::ErrorKind::Config => ExitCode::from(2),
                        _ => ExitCode::from(1),
                    }
                }
            }
        }
    }
}
