//! Turnstile's glue between socket bytes and rustls, server side: arbitrary bytes arrive
//! on an in-memory socket (in chunks whose sizes the input picks, the socket's send room
//! too), and the layer is driven as a session drives it: reads until it would block,
//! a write of an answer, a flush, a half-close. Whatever comes, it must fail cleanly or
//! go on, never panic, and every call must return (no loop without progress).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::{Arc, OnceLock};
use turnstile::tls::{CertDirs, CertStore, RawIo, TlsKeep, TlsLayer, TlsMetrics, TlsServer};

struct Server {
    tls: TlsServer,
    metrics: Arc<TlsMetrics>,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["fuzz.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("turnstile-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
        let keep = TlsKeep::new().unwrap();
        let entry = config::SslCert {
            cert: "c.pem".into(),
            key: Some("k.pem".into()),
            dest_ip: Some(config::DestIp::Any),
        };
        let dirs = CertDirs {
            certs: dir.clone(),
            keys: dir.clone(),
        };
        let store = CertStore::load(&[entry], &dirs, keep.provider()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Server {
            tls: TlsServer::with_store(Arc::new(store), &keep).unwrap(),
            metrics: TlsMetrics::new(&iocore::Registry::default()),
        }
    })
}

/// An in-memory socket: `input` arrives `chunk` bytes per recv, then WouldBlock once
/// (an edge), then the next chunk; EOF after the last. Sends take at most `room` bytes
/// a call.
struct Mem<'a> {
    input: &'a [u8],
    at: Cell<usize>,
    chunk: usize,
    blocked: Cell<bool>,
    room: usize,
    sent: RefCell<usize>,
}

impl RawIo for Mem<'_> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.at.get();
        if at >= self.input.len() {
            return Ok(0);
        }
        if self.blocked.replace(false) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.chunk).min(self.input.len() - at);
        buf[..n].copy_from_slice(&self.input[at..at + n]);
        self.at.set(at + n);
        self.blocked.set(true);
        Ok(n)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        *self.sent.borrow_mut() += n;
        Ok(n)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let (Some(&c), Some(&r)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = &data[2..];
    let s = server();
    let conn = s.tls.accept("127.0.0.1".parse().unwrap()).unwrap();
    let mut layer = TlsLayer::new(rustls::Connection::Server(conn), s.metrics.clone());
    let io = Mem {
        input,
        at: Cell::new(0),
        chunk: usize::from(c) * 64 + 1,
        blocked: Cell::new(false),
        room: usize::from(r) * 16,
        sent: RefCell::new(0),
    };
    let mut buf = [0u8; 4096];
    // Every turn either consumes input or ends: the bound is generous.
    for _ in 0..input.len() + 8 {
        let mut reads = 0;
        let done = loop {
            reads += 1;
            assert!(reads < 100_000, "a read loop that does not progress");
            match layer.read(&io, &mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if done {
            break;
        }
        let _ = layer.write(&io, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        let _ = layer.flush(&io, false);
    }
    layer.shutdown_write(&io);
});
