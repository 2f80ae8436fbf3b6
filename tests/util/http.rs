//! A small blocking HTTP/1.1 client for tests: raw requests, keep-alive, and response
//! parsing with Content-Length, chunked and close-delimited bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.stream().write_all(raw)
    }

    /// GET `path` with Host `host`, keep-alive.
    pub fn get(&mut self, host: &str, path: &str) -> std::io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        self.read_response("GET")
    }

    /// Reads one response to a `method` request.
    pub fn read_response(&mut self, method: &str) -> std::io::Result<Response> {
        loop {
            let r = self.read_one(method)?;
            if (100..200).contains(&r.status) {
                continue;
            }
            return Ok(r);
        }
    }

    /// Reads one response, interim ones included.
    pub fn read_one(&mut self, method: &str) -> std::io::Result<Response> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        let mut parts = line.split_whitespace();
        let _version = parts.next().ok_or_else(|| bad("no status line"))?;
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').ok_or_else(|| bad("bad header"))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(r);
        }
        if r.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if n == 0 {
                    loop {
                        let mut t = String::new();
                        self.reader.read_line(&mut t)?;
                        if t.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = r.body.len();
                r.body.resize(start + n, 0);
                self.reader.read_exact(&mut r.body[start..])?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf)?;
            }
        } else if let Some(cl) = r.header("content-length") {
            let n: usize = cl.parse().map_err(|_| bad("bad content-length"))?;
            r.body.resize(n, 0);
            self.reader.read_exact(&mut r.body)?;
        } else {
            self.reader.read_to_end(&mut r.body)?;
        }
        Ok(r)
    }
}

/// One GET on a fresh connection.
/// A connection that has sent `GET path` (Host `t`), its answer not read yet.
pub fn send_get(addr: SocketAddr, path: &str) -> Conn {
    let mut c = Conn::open(addr).unwrap();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    c
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    Conn::open(addr)?.get(host, path)
}

/// One request with extra headers and a body on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut c = Conn::open(addr)?;
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    c.send(raw.as_bytes())?;
    c.send(body)?;
    c.read_response(method)
}
