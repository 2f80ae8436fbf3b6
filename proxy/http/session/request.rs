//! A request's first steps: reading its head, routing it (the stats endpoint, a remap
//! rule's origin, a forward proxy's origin, a CONNECT tunnel), and the answers
//! Turnstile gives itself (errors, stats). Runs on the session's ET_NET thread.

use super::super::codec::{self, RequestHead};
use super::super::parent::ParentTable;
use super::super::remap::split_authority;
use super::dns::Resumed;
use super::log::LogResult;
use super::state::keep_spare;
use super::{Counted, Pending, Phase, Session};
use crate::error::{Error, ErrorKind};
use crate::stats_http::{self, Format};
use iocore::EThread;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

impl Session {
    /// Reads and parses the next request head; a whole one begins its transaction.
    pub(super) fn read_request(&mut self, t: &mut EThread) -> bool {
        if self.client_pending() > 0 {
            // One answer at a time: the next (pipelined) request is read once the
            // answer before it is in the socket. A client that sends and never reads
            // then costs one answer here; its other requests wait unread in the kernel,
            // as they do behind an origin's answer.
            return false;
        }
        if self.pp_pending {
            return self.read_proxy_header();
        }
        let max_head = self.shared.settings.max_head;
        // Parsed only when bytes came since the last look, as the response head is
        // (`exchange.rs`, `take_response_head`).
        if self.inbuf.len() > self.head_searched {
            match codec::parse_request_from(&self.inbuf, max_head, self.head_searched) {
                Ok(Some((head, len))) => {
                    self.inbuf.drain(..len);
                    self.head_searched = 0;
                    self.begin(t, head);
                    return true;
                }
                Ok(None) => self.head_searched = self.inbuf.len(),
                Err(e) => {
                    self.shared.metrics.incoming_requests.inc();
                    self.head_only = false;
                    self.answer_error(Error::from(e), false);
                    return true;
                }
            }
        }
        if self.client.eof {
            // Closed between requests (or mid-head): nothing more to answer, but what
            // was answered is still flushed (a half-closed client reads on; a full
            // socket waits for its writable edge), and a TLS client gets our
            // close_notify after it (RFC 8446 §6.1): both by the lingering close.
            self.dead = !self.client.is_tls() && self.client_pending() == 0;
            if !self.dead {
                self.phase = Phase::closing(false);
            }
            return true;
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 && !self.client.readable {
            keep_spare(&mut self.inbuf); // idle: hold no buffer
        }
        let room = max_head + 1 - self.inbuf.len().min(max_head);
        self.read_client(room)
    }

    fn begin(&mut self, t: &mut EThread, head: RequestHead) {
        self.shared.metrics.incoming_requests.inc();
        self.head_only = head.method() == "HEAD";
        if self.shared.access_log().is_some() {
            self.log_begin(&head);
        }
        self.route(t, head, None);
    }

    /// Where a request goes: the stats endpoint, a remap rule's origin, a forward
    /// proxy's (once its name is resolved), a CONNECT tunnel, or a local error.
    /// `resumed`: the request waited for its origin's name, which came.
    pub(super) fn route(&mut self, t: &mut EThread, head: RequestHead, resumed: Option<Resumed>) {
        let shared = self.shared.clone();
        let settings = &shared.settings;
        let keep = head.keep_alive_unread();
        let (mut answer, active) = match resumed {
            Some(r) => (Some(r.answer), Some(r.active)),
            None => (None, None),
        };
        if settings.instance.seen_in(head.headers_all("via")) {
            // Been here before: a parent (or a parent's parent) sent it back. A CONNECT
            // closes, as its other refusals do: what follows it was meant for the
            // tunnel, never to be read as requests.
            self.shared.metrics.loops_detected.inc();
            let keep = keep && head.method() != "CONNECT";
            return self.answer_error(Error::new(ErrorKind::LoopDetected), keep);
        }
        if head.max_forwards() == Some(0) {
            return self.answer_last_hop(&head, keep);
        }
        if head.method() == "CONNECT" {
            return self.open_connect(t, head, answer);
        }
        let target = match head.split_target() {
            Ok(t) => t,
            Err(e) => return self.answer_error(Error::from(e), false),
        };
        let path = &*target.path_and_query;
        if target.scheme.is_none() {
            if let Some(rest) = path.strip_prefix(settings.stats_path.as_str()) {
                if let Some(format) = Format::select(rest, head.header("accept")) {
                    if !matches!(head.method(), "GET" | "HEAD") {
                        let allow = [("Allow", "GET, HEAD")];
                        let why = "the stats endpoint answers GET and HEAD";
                        return self.local_response(405, why, false, keep, &allow);
                    }
                    return self.stats(&head, format, keep);
                }
            }
        }
        let host = target.host.as_deref();
        // One look at the live settings per request: the rule, and the origin's limit.
        let (remapped, origin_max, parents) = shared.with_live(|live| {
            let rule = live.remap.lookup(host, path).map(|(rule, to_path)| {
                let to = (rule.to_addr, rule.to_tls.clone());
                (to, rule.to_host.clone(), to_path)
            });
            let parents = (!live.parents.is_empty()).then(|| live.parents.clone());
            (rule, live.origin_max, parents)
        });
        let ((addr, tls), host_header, path) = match remapped {
            Some(found) => found,
            None if target.scheme.is_some() && !settings.remap_required => {
                let Some((h, port)) = host.and_then(split_authority) else {
                    return self.answer_error(Error::new(ErrorKind::BadTarget), false);
                };
                let https = target.scheme == Some("https");
                let port = port.unwrap_or(if https { 443 } else { 80 });
                let authority = host.unwrap_or_default();
                // `https://` asked in plain HTTP: the origin is spoken to over TLS, with
                // the URL's host name.
                let name = h.trim_start_matches('[').trim_end_matches(']');
                let tls = match https.then(|| ServerName::try_from(name)) {
                    Some(Ok(name)) => Some(name.to_owned()),
                    Some(Err(_)) => {
                        return self.answer_error(Error::new(ErrorKind::BadTarget), false)
                    }
                    None => None,
                };
                let rule = |f: fn(&ParentTable, &str) -> bool| {
                    parents.as_deref().is_some_and(|p| f(p, authority))
                };
                // Only parents will see it: its origin's name is theirs to look up.
                let nowhere = SocketAddr::from(([0, 0, 0, 0], port));
                let addr = if rule(Self::parent_only) {
                    nowhere
                } else {
                    match self.address_of(&h, port, &mut answer) {
                        Some(Ok(a)) => a,
                        // A name only the parents can resolve: they still take it, with
                        // no origin to go direct to.
                        Some(Err(_)) if rule(Self::parent_covers) => nowhere,
                        // The resolver's ResolveFailed: 502.
                        Some(Err(e)) => return self.answer_error(e, keep),
                        None => return self.wait_for_name(t, h, port, head),
                    }
                };
                ((addr, tls), Arc::from(authority), path.to_string())
            }
            None => return self.answer_error(Error::new(ErrorKind::NoRemap), keep),
        };
        let parent = parents.and_then(|p| {
            let origin = (!addr.ip().is_unspecified()).then_some(addr);
            Self::parent_route(&p, &host_header, &path, origin)
        });
        let pending = Pending {
            head,
            addr,
            tls,
            host_header,
            path,
            origin_max,
            active,
            parent,
        };
        self.consult_cache(t, pending);
    }

    /// Answers the request in progress (or a head that did not parse) with `err`'s
    /// status and message (its head alone to a HEAD), closing afterwards unless `keep`.
    pub(super) fn answer_error(&mut self, err: Error, keep: bool) {
        if let Some(l) = self.log_req.as_mut() {
            l.aborted |= err.client_aborted();
        }
        self.local_response(err.status(), &err.message(), self.head_only, keep, &[]);
    }

    /// A local answer (error, stats): queued in order; closes afterwards unless `keep`.
    /// `head_only` frames `body` without sending it ([`codec::simple_response`]).
    pub(super) fn local_response(
        &mut self,
        status: u16,
        body: &str,
        head_only: bool,
        keep: bool,
        headers: &[(&str, &str)],
    ) {
        let keep = keep && !self.shared.draining();
        self.owe_status(status);
        codec::simple_response(status, body, head_only, keep, headers, &mut self.out_c);
        self.shared.metrics.completed_requests.inc();
        let result = match self.log_req.as_deref() {
            Some(l) if l.origin.is_some() => l.result,
            _ => LogResult::None,
        };
        self.log_end(status, result);
        if !keep {
            self.phase = Phase::closing(false);
            self.deadline = Instant::now() + self.write_limit();
        }
    }

    /// A TRACE or OPTIONS whose `Max-Forwards` is 0: this proxy is its final recipient
    /// (RFC 9110 §7.6.2). TRACE gets its request back as `message/http` (§9.3.8), less
    /// the fields that carry credentials; OPTIONS the methods the proxy relays.
    fn answer_last_hop(&mut self, head: &RequestHead, keep: bool) {
        if head.method() == "OPTIONS" {
            let allow = (
                "Allow",
                "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PURGE",
            );
            return self.local_response(200, "", false, keep, &[allow]);
        }
        let mut echo = format!("TRACE {} HTTP/1.1\r\n", head.target());
        for f in head.headers.iter() {
            let secret = ["authorization", "proxy-authorization", "cookie"]
                .iter()
                .any(|n| f.name.eq_ignore_ascii_case(n));
            if !secret {
                echo.push_str(f.name);
                echo.push_str(": ");
                echo.push_str(&String::from_utf8_lossy(f.value));
                echo.push_str("\r\n");
            }
        }
        echo.push_str("\r\n");
        self.local_response(200, &echo, false, keep, &[("Content-Type", "message/http")]);
    }

    /// The stats endpoint (SPEC §6), for clients `stats.allow_ip` lets in.
    fn stats(&mut self, head: &RequestHead, format: Format, keep: bool) {
        let peer = self.peer().ip();
        if !self
            .shared
            .with_live(|live| live.allow.iter().any(|n| n.contains(&peer)))
        {
            return self.answer_error(Error::new(ErrorKind::Forbidden), keep);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let server = &self.shared.settings.server;
        // A HEAD renders the body too, for its length: a HEAD's Content-Length must be
        // the GET's (RFC 9110 §8.6), and rendering is cheap.
        let body = stats_http::render(format, &self.shared.registry, now_ms, server);
        self.local_response(
            200,
            &body,
            head.method() == "HEAD",
            keep,
            &[
                ("Content-Type", format.content_type()),
                ("Cache-Control", "no-cache"),
            ],
        );
    }

    /// The client's address: the one its PROXY header gave (`pp` ports), else the
    /// connection's. Everything that asks who the client is asks here: X-Forwarded-For,
    /// the access log, `stats.allow_ip`, `http.cache.purge_allow_ip`.
    pub(super) fn peer(&self) -> SocketAddr {
        self.pp_client
            .unwrap_or_else(|| self.client.wire().peer_addr())
    }

    /// Counts the request in flight from now, unless it already is.
    pub(super) fn in_flight(&self, active: Option<Counted>) -> Counted {
        active.unwrap_or_else(|| Counted::new(&self.shared.metrics.active_transactions))
    }
}
