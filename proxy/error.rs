//! The proxy's one error type: what failed (an [`ErrorKind`]), which side it came from
//! ([`Side`]), whether the request may be sent again ([`Retry`]), and context naming
//! what was being done. One place maps each kind to the status and short body a client
//! gets ([`Error::status`], [`Error::message`]); the access log reads the side.
//!
//! Plain data: any thread makes and reads them.

use crate::http::codec::HeadError;
use std::fmt;

/// Where an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: a bad or incomplete request, a silent client.
    Client,
    /// The origin (or the way to it): refused, silent, closed, a bad response.
    Origin,
    /// Turnstile itself: configuration, files, sockets of its own.
    Internal,
}

/// Whether a request that met the error may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Never: the request may have had effects, or the error is final.
    Never,
    /// Once, on a new connection, when the error came on a reused origin connection
    /// before any response byte (the origin closed it while it was pooled; Pingora's
    /// `RetryType::ReusedOnly`).
    ReusedOnly,
}

/// What failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A request head the codec refused (400, 431 or 505).
    BadHead(HeadError),
    /// The client sent part of a head and then nothing (408).
    RequestTimeout,
    /// The client went silent in the middle of a request body (408).
    BodyTimeout,
    /// A request target the proxy cannot route (400).
    BadTarget,
    /// No remap rule matches and forward proxying is off (404).
    NoRemap,
    /// The client may not read this (403): the stats endpoint off `stats.allow_ip`.
    Forbidden,
    /// CONNECT on a reverse proxy (403).
    ConnectNotForward,
    /// CONNECT to a port `connect_ports` does not allow (403).
    ConnectPortDenied,
    /// CONNECT without `host:port`, or with a body (400).
    BadConnect,
    /// The origin's name did not resolve (502).
    ResolveFailed,
    /// The origin's name did not resolve within `connect_attempts_timeout` (502).
    ResolveTimeout,
    /// The origin refused or reset the connection (502).
    ConnectFailed,
    /// The origin's connect did not complete within `connect_attempts_timeout` (502).
    ConnectTimeout,
    /// The origin closed the connection before a whole response head (502).
    OriginClosed,
    /// The origin's response head is malformed (502).
    BadResponse,
    /// TLS with the origin failed: its certificate did not verify under ENFORCED, or
    /// the handshake broke (502).
    OriginTls,
    /// The origin was silent for `transaction_no_activity_timeout_out` (504).
    OriginTimeout,
    /// `per_server.connection.max` left no place within `connect_attempts_timeout` (503).
    OriginBusy,
    /// `only-if-cached` and nothing usable stored (504, RFC 9111 §5.2.1.7).
    NotCached,
    /// The request's `Via` holds this proxy's own token: it went round a loop (508).
    LoopDetected,
    /// No parent of the request's `[[parent]]` rule could take it, and `go_direct` is
    /// false (502).
    NoParent,
    /// A configuration value, file or start-up step failed (the context says which).
    Config,
    /// An I/O error of Turnstile's own (a file, a socket to bind).
    Io(std::io::ErrorKind),
}

/// An error with its side, retry rule and context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What failed.
    pub kind: ErrorKind,
    /// Who is to blame.
    pub side: Side,
    /// Whether the request may be sent again.
    pub retry: Retry,
    /// What was being done, for logs and `ctl` (not sent to clients).
    pub context: Option<String>,
    /// An origin-side failure that came from a parent proxy, not the origin: the
    /// client's body names the parent ([`Error::from_parent`]).
    pub parent: bool,
}

/// Results of the proxy's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`, its side the one the kind implies, never retried.
    pub fn new(kind: ErrorKind) -> Error {
        let side = match &kind {
            ErrorKind::BadHead(_)
            | ErrorKind::RequestTimeout
            | ErrorKind::BodyTimeout
            | ErrorKind::BadTarget
            | ErrorKind::NoRemap
            | ErrorKind::Forbidden
            | ErrorKind::ConnectNotForward
            | ErrorKind::ConnectPortDenied
            | ErrorKind::BadConnect
            | ErrorKind::NotCached
            | ErrorKind::LoopDetected => Side::Client,
            ErrorKind::ResolveFailed
            | ErrorKind::ResolveTimeout
            | ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::OriginClosed
            | ErrorKind::BadResponse
            | ErrorKind::OriginTls
            | ErrorKind::OriginTimeout
            | ErrorKind::OriginBusy
            | ErrorKind::NoParent => Side::Origin,
            ErrorKind::Config | ErrorKind::Io(_) => Side::Internal,
        };
        Error {
            kind,
            side,
            retry: Retry::Never,
            context: None,
            parent: false,
        }
    }

    /// A configuration or start-up failure described by `what`.
    pub fn config(what: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config).context(what)
    }

    /// One error for `errors`: the error itself when it is alone, their messages one a
    /// line when there are several (an operator mends them all at once); None for none.
    pub fn joined(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::config(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
        }
    }

    /// An I/O failure of Turnstile's own while doing `what`.
    pub fn io(what: impl fmt::Display, e: &std::io::Error) -> Error {
        Error::new(ErrorKind::Io(e.kind())).context(format!("{what}: {e}"))
    }

    /// With `context` saying what was being done.
    pub fn context(mut self, context: impl Into<String>) -> Error {
        self.context = Some(context.into());
        self
    }

    /// The same failure as a part of the larger step `what`, named first: "port 8080"
    /// before "bind 0.0.0.0:8080: …" (it displays as `"{what}: {self}"`). Kind, side and
    /// retry rule stay.
    pub fn within(mut self, what: impl fmt::Display) -> Error {
        self.context = Some(match (self.context.take(), &self.kind) {
            (Some(c), _) => format!("{what}: {c}"),
            // Display shows these kinds' context alone: keep the message in it.
            (None, ErrorKind::Config | ErrorKind::Io(_)) => format!("{what}: {}", self.message()),
            (None, _) => what.to_string(),
        });
        self
    }

    /// The failure as a configuration error of the step `what`, followed by what this
    /// one's context (else its message) says: a remap rule whose origin name does not
    /// resolve when the configuration is applied.
    pub fn into_config(self, what: impl fmt::Display) -> Error {
        let detail = match self.context {
            Some(c) => c,
            None => self.message(),
        };
        Error::config(format!("{what}: {detail}"))
    }

    /// The same failure, met on a parent proxy (`parent_is_proxy`) rather than the
    /// origin: its message says "parent proxy" where it says "origin", so an operator
    /// reading a client's 502 looks at the tier, not the origin.
    pub fn from_parent(mut self) -> Error {
        self.parent = self.side == Side::Origin;
        self
    }

    /// With a retry rule.
    pub fn retry(mut self, retry: Retry) -> Error {
        self.retry = retry;
        self
    }

    /// The status a client gets for it.
    pub fn status(&self) -> u16 {
        match &self.kind {
            ErrorKind::BadHead(e) => e.status(),
            ErrorKind::RequestTimeout | ErrorKind::BodyTimeout => 408,
            ErrorKind::BadTarget | ErrorKind::BadConnect => 400,
            ErrorKind::NoRemap => 404,
            ErrorKind::Forbidden | ErrorKind::ConnectNotForward | ErrorKind::ConnectPortDenied => {
                403
            }
            ErrorKind::ResolveFailed
            | ErrorKind::ResolveTimeout
            | ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::OriginClosed
            | ErrorKind::OriginTls
            | ErrorKind::BadResponse
            | ErrorKind::NoParent => 502,
            ErrorKind::LoopDetected => 508,
            ErrorKind::OriginBusy => 503,
            ErrorKind::OriginTimeout | ErrorKind::NotCached => 504,
            ErrorKind::Config | ErrorKind::Io(_) => 500,
        }
    }

    /// The short body a client gets for it: what failed, never the context.
    pub fn message(&self) -> String {
        let fixed = match &self.kind {
            ErrorKind::BadHead(e) => return e.to_string(),
            ErrorKind::RequestTimeout => "request timeout",
            ErrorKind::BodyTimeout => "request body timeout",
            ErrorKind::BadTarget => "bad request target",
            ErrorKind::NoRemap => "no remap rule for this request",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::ConnectNotForward => {
                "CONNECT is served only by a forward proxy (url_remap.remap_required = false)"
            }
            ErrorKind::ConnectPortDenied => "CONNECT to this port is not allowed (connect_ports)",
            ErrorKind::BadConnect => "CONNECT needs host:port and no body",
            ErrorKind::ResolveFailed => "cannot resolve origin",
            ErrorKind::ResolveTimeout => "cannot resolve origin in time",
            ErrorKind::ConnectFailed => "cannot connect to origin",
            ErrorKind::ConnectTimeout => "origin connect timeout",
            ErrorKind::OriginClosed => "origin closed the connection without a response",
            ErrorKind::BadResponse => "invalid response from origin",
            ErrorKind::OriginTls => "TLS with the origin failed",
            ErrorKind::OriginTimeout => "origin timeout",
            ErrorKind::OriginBusy => "origin busy: per_server.connection.max reached",
            ErrorKind::NotCached => "not cached (only-if-cached)",
            ErrorKind::LoopDetected => "loop detected: this request has passed this proxy before",
            ErrorKind::NoParent => "no parent proxy available",
            ErrorKind::Config => "configuration error",
            ErrorKind::Io(_) => "internal error",
        };
        if self.parent {
            fixed.replace("origin", "parent proxy")
        } else {
            fixed.to_string()
        }
    }

    /// The request never reached its origin (or parent): no name, no connection. A
    /// request sent again at once would most likely meet the same.
    pub fn unreachable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ResolveFailed
                | ErrorKind::ResolveTimeout
                | ErrorKind::ConnectFailed
                | ErrorKind::ConnectTimeout
                | ErrorKind::NoParent
        )
    }

    /// The client went away or fell silent: the access log marks the request aborted.
    pub fn client_aborted(&self) -> bool {
        self.kind == ErrorKind::BodyTimeout
    }
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Error {
        Error::new(ErrorKind::BadHead(e))
    }
}

/// A socket operation of Turnstile's own: its I/O kind, and the operation, address and
/// errno as iocore says them ("bind 0.0.0.0:8080: Address already in use (os error 98)").
impl From<iocore::net::ListenError> for Error {
    fn from(e: iocore::net::ListenError) -> Error {
        Error::new(ErrorKind::Io(e.source.kind())).context(e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.context, &self.kind) {
            // Context already says it all for Turnstile's own failures.
            (Some(c), ErrorKind::Config | ErrorKind::Io(_)) => f.write_str(c),
            (Some(c), _) => write!(f, "{c}: {}", self.message()),
            (None, _) => f.write_str(&self.message()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_maps_to_its_status_side_and_message() {
        let e = Error::new(ErrorKind::ConnectFailed);
        assert_eq!((e.status(), e.side), (502, Side::Origin));
        assert_eq!(e.message(), "cannot connect to origin");
        let e = Error::from(HeadError::TooLarge);
        assert_eq!((e.status(), e.side), (431, Side::Client));
        assert_eq!(Error::new(ErrorKind::BodyTimeout).status(), 408);
        assert!(Error::new(ErrorKind::BodyTimeout).client_aborted());
        assert!(!Error::new(ErrorKind::RequestTimeout).client_aborted());
        assert_eq!(Error::new(ErrorKind::OriginBusy).status(), 503);
        assert_eq!(Error::new(ErrorKind::OriginTimeout).status(), 504);
    }

    #[test]
    fn a_parents_failure_is_worded_as_the_parents() {
        let e = Error::new(ErrorKind::OriginTimeout).from_parent();
        assert_eq!(
            (e.status(), e.message().as_str()),
            (504, "parent proxy timeout")
        );
        let e = Error::new(ErrorKind::BadResponse).from_parent();
        assert_eq!(e.message(), "invalid response from parent proxy");
        // Not the origin's side: nothing to reword.
        let e = Error::new(ErrorKind::NotCached).from_parent();
        assert_eq!(e.message(), "not cached (only-if-cached)");
    }

    #[test]
    fn context_shows_in_logs_never_in_the_message() {
        let e = Error::new(ErrorKind::ConnectFailed).context("connect 127.0.0.1:9");
        assert_eq!(
            e.to_string(),
            "connect 127.0.0.1:9: cannot connect to origin"
        );
        assert_eq!(e.message(), "cannot connect to origin");
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Error::io("open /x", &io);
        assert_eq!(e.side, Side::Internal);
        assert!(e.to_string().starts_with("open /x: "), "{e}");
        assert_eq!(Error::config("bad span").to_string(), "bad span");
    }

    #[test]
    fn within_names_the_larger_step_first_and_keeps_the_kind() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let e = Error::io("bind 0.0.0.0:8080", &io).within("port 8080");
        assert_eq!(e.kind, ErrorKind::Io(std::io::ErrorKind::AddrInUse));
        assert_eq!(e.to_string(), format!("port 8080: bind 0.0.0.0:8080: {io}"));
        for e in [
            Error::new(ErrorKind::OriginBusy),
            Error::new(ErrorKind::ConnectFailed).context("connect 127.0.0.1:9"),
            Error::new(ErrorKind::Config),
        ] {
            assert_eq!(e.clone().within("pool").to_string(), format!("pool: {e}"));
        }
    }

    #[test]
    fn into_config_keeps_the_context_and_drops_the_client_message() {
        let e = Error::new(ErrorKind::ResolveFailed).context("cannot resolve x: gone");
        let c = e.into_config("remap / → http://x/");
        assert_eq!((&c.kind, c.side), (&ErrorKind::Config, Side::Internal));
        assert_eq!(c.to_string(), "remap / → http://x/: cannot resolve x: gone");
    }

    #[test]
    fn retry_is_never_unless_asked() {
        let e = Error::new(ErrorKind::OriginClosed);
        assert_eq!(e.retry, Retry::Never);
        assert_eq!(e.retry(Retry::ReusedOnly).retry, Retry::ReusedOnly);
    }
}
