//! Helpers shared by iocore's integration tests: processors, listeners, clients and
//! deadline-bounded waits. Every listener binds 127.0.0.1 port 0.
#![allow(dead_code)]

use iocore::{
    AcceptMode, AcceptOptions, Action, EThread, EventProcessor, EventProcessorOptions, Interest,
    ListenOptions, Listener, NetConnection, NetProcessor, NetTuning, Ready, Registry, Token,
    Verdict,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `cond` every millisecond until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub struct Rig {
    pub events: Arc<EventProcessor>,
    pub net: NetProcessor,
    pub registry: Arc<Registry>,
}

impl Rig {
    pub fn new(threads: usize, tuning: NetTuning) -> Rig {
        let events = Arc::new(
            EventProcessor::start(&EventProcessorOptions {
                threads,
                ..Default::default()
            })
            .expect("start event threads"),
        );
        let registry = Registry::new();
        let net = NetProcessor::new(events.clone(), registry.clone(), &tuning);
        Rig {
            events,
            net,
            registry,
        }
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.registry.value(name).unwrap_or(0)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.events.shutdown();
    }
}

pub fn listener() -> Arc<Listener> {
    Arc::new(
        Listener::bind(&ListenOptions::new("127.0.0.1:0".parse().unwrap()))
            .expect("bind 127.0.0.1:0"),
    )
}

pub fn reuseport_listener() -> Arc<Listener> {
    let mut o = ListenOptions::new("127.0.0.1:0".parse().unwrap());
    o.reuseport = true;
    Arc::new(Listener::bind(&o).expect("bind 127.0.0.1:0"))
}

pub fn all_modes() -> Vec<(&'static str, AcceptMode)> {
    vec![
        (
            "threads",
            AcceptMode::Threads {
                count: 2,
                avoid_event_cores: false,
            },
        ),
        (
            "event",
            AcceptMode::Event {
                listener_per_thread: false,
            },
        ),
        (
            "event-reuseport",
            AcceptMode::Event {
                listener_per_thread: true,
            },
        ),
        ("periodic", AcceptMode::Periodic),
    ]
}

/// An echo-one-byte handler: reads a byte, writes it back, closes.
pub struct EchoOnce {
    pub conn: NetConnection,
}

impl iocore::IoHandler for EchoOnce {
    fn ready(&mut self, _t: &mut EThread, _tok: Token, _r: Ready) -> Verdict {
        let mut b = [0u8; 1];
        match self.conn.recv(&mut b) {
            Ok(0) => Verdict::Remove,
            Ok(_) => {
                let _ = self.conn.send(&b);
                Verdict::Remove
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Verdict::Keep,
            Err(_) => Verdict::Remove,
        }
    }
}

/// Starts `mode` on a fresh listener with an echo-once acceptor that counts connections
/// started on ET_NET threads (and any started elsewhere, which would be a bug).
pub fn echo_port(
    rig: &Rig,
    mode: AcceptMode,
) -> (Arc<Listener>, Action, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = if matches!(
        mode,
        AcceptMode::Event {
            listener_per_thread: true
        }
    ) {
        reuseport_listener()
    } else {
        listener()
    };
    let on_et = Arc::new(AtomicUsize::new(0));
    let off_et = Arc::new(AtomicUsize::new(0));
    let (a, b) = (on_et.clone(), off_et.clone());
    let acceptor = move |conn: NetConnection, t: &mut EThread| {
        if iocore::eventsystem::current_thread_id() == Some(t.id()) {
            a.fetch_add(1, Ordering::SeqCst);
        } else {
            b.fetch_add(1, Ordering::SeqCst);
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
        let _ = t.register(fd, Interest::READ, Box::new(EchoOnce { conn }));
    };
    let action = rig
        .net
        .main_accept(
            Arc::new(acceptor),
            l.clone(),
            &AcceptOptions::new("test", mode),
        )
        .expect("main_accept");
    (l, action, on_et, off_et)
}

/// One request through an echo-once port: connect, send a byte, read it back.
pub fn echo_roundtrip(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    assert_eq!(&b, b"x");
    Ok(())
}
