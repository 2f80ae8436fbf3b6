//! A scriptable origin server for tests: thread per connection, keep-alive, request
//! bodies (Content-Length and chunked), and counters of connections and requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the origin does with a request: the raw bytes to write back (the whole response),
/// or None to close the connection without answering.
pub type Script = Arc<dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync>;

pub struct Origin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

/// A complete response with a Content-Length body.
pub fn ok(body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

impl Origin {
    pub fn start(script: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Script = Arc::new(script);
        let (c, r, s) = (connections.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (script, r) = (script.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &script, &r));
            }
        });
        Origin {
            addr,
            connections,
            requests,
            stop,
        }
    }

    /// An origin answering every request with 200 and `body`.
    pub fn fixed(body: &'static [u8]) -> Origin {
        Origin::start(move |_| Some(ok(body, &[])))
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Origin {
    /// The paths of the requests received so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|r| r.path.clone()).collect()
    }

    /// Waits (10 s at most) until the origin has received `n` requests.
    pub fn wait_for_requests(&self, n: usize) -> bool {
        super::wait_until(Duration::from_secs(10), || self.request_count() >= n)
    }
}

/// Where a script holds its answers until the test opens it (or 20 s pass).
#[derive(Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Blocks the calling (origin) thread until the gate opens.
    pub fn wait(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.0.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, script: &Script, log: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut w = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        log.lock().unwrap().push(req.clone());
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match script(&req) {
            Some(mut resp) => {
                if req.method == "HEAD" {
                    // A real origin sends the head only.
                    if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                        resp.truncate(end + 4);
                    }
                }
                if w.write_all(&resp).is_err() {
                    return;
                }
                let head_end = resp
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(resp.len());
                let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
                if head.contains("connection: close") {
                    return; // a close-delimited response ends with our close
                }
            }
            None => return,
        }
        if close {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut t = String::new();
                reader.read_line(&mut t).ok()?;
                break;
            }
            let start = req.body.len();
            req.body.resize(start + n, 0);
            reader.read_exact(&mut req.body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        req.body.resize(n, 0);
        reader.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}
