//! The native protocol: bytes <-> [`Request`] / [`Reply`] (see
//! `docs/protocol.md` for the byte layouts).
//!
//! This module is the codec layer only, in mini-redis's check-then-parse
//! style: [`decode_request`] looks at the 4-byte length first, returns
//! `Ok(None)` ("read more") until the whole frame is buffered, then splits the
//! frame off the buffer as one `Bytes` so the token is a zero-copy slice of
//! it. It knows nothing of sockets, verification or caching.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::revocation::Revoke;
use crate::verify::{Anomalies, Reject};

/// Protocol version spoken by this build.
pub const VERSION: u8 = 1;
/// Bytes after the length field that every frame has (version, op/status,
/// flags/code, id).
pub const HEADER_LEN: usize = 8;
/// Default (and suggested client) maximum frame size.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

const OP_VERIFY: u8 = 1;
const OP_PING: u8 = 2;
const OP_REVOKE: u8 = 3;
const OP_VERIFY_CTX: u8 = 4;

/// VERIFY_CTX field types (`docs/protocol.md`).
const FIELD_METHOD: u8 = 1;
const FIELD_URI: u8 = 2;
const FIELD_DPOP: u8 = 3;
const FIELD_CERT_SHA256: u8 = 4;
const FIELD_CLIENT_ADDR: u8 = 5;

/// What a VERIFY_CTX says about the request the token came with, for the
/// binding stage (DPoP, certificate-bound tokens, address rules). Every
/// field is optional; text fields are checked to be printable ASCII when
/// decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireContext {
    /// The HTTP method (`GET`).
    pub method: Option<Bytes>,
    /// The absolute URI (`https://api.example.com/orders`).
    pub uri: Option<Bytes>,
    /// The `DPoP` proof: its presence presents the token as DPoP.
    pub dpop: Option<Bytes>,
    /// SHA-256 of the client's DER certificate.
    pub cert_sha256: Option<[u8; 32]>,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
}

impl WireContext {
    /// The fields in wire form (type, value), in type order.
    fn fields(&self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(m) = &self.method {
            out.push((FIELD_METHOD, m.to_vec()));
        }
        if let Some(u) = &self.uri {
            out.push((FIELD_URI, u.to_vec()));
        }
        if let Some(d) = &self.dpop {
            out.push((FIELD_DPOP, d.to_vec()));
        }
        if let Some(c) = &self.cert_sha256 {
            out.push((FIELD_CERT_SHA256, c.to_vec()));
        }
        match self.client {
            Some(std::net::IpAddr::V4(v4)) => out.push((FIELD_CLIENT_ADDR, v4.octets().to_vec())),
            Some(std::net::IpAddr::V6(v6)) => out.push((FIELD_CLIENT_ADDR, v6.octets().to_vec())),
            None => {}
        }
        out
    }

    /// Reads the fields of a VERIFY_CTX body; `None` when one is malformed,
    /// unknown, or given twice.
    fn parse(mut rest: Bytes) -> Option<WireContext> {
        let mut ctx = WireContext::default();
        let mut seen = 0u32;
        while !rest.is_empty() {
            if rest.len() < 3 {
                return None;
            }
            let kind = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            if rest.len() < 3 + len {
                return None;
            }
            let value = rest.slice(3..3 + len);
            rest.advance(3 + len);
            let bit = 1u32.checked_shl(u32::from(kind)).unwrap_or(0);
            if bit == 0 || seen & bit != 0 {
                return None;
            }
            seen |= bit;
            let printable = |v: &Bytes| !v.is_empty() && v.iter().all(|b| (0x21..0x7f).contains(b));
            match kind {
                FIELD_METHOD if printable(&value) => ctx.method = Some(value),
                FIELD_URI if printable(&value) => ctx.uri = Some(value),
                FIELD_DPOP => ctx.dpop = Some(value),
                FIELD_CERT_SHA256 => ctx.cert_sha256 = Some(<[u8; 32]>::try_from(&value[..]).ok()?),
                FIELD_CLIENT_ADDR => {
                    ctx.client = Some(match value.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(&value[..]).ok()?),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(&value[..]).ok()?),
                        _ => return None,
                    });
                }
                _ => return None,
            }
        }
        Some(ctx)
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Client-chosen id, echoed in the reply.
    pub id: u32,
    /// What is asked.
    pub op: Op,
}

/// Request operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Verify `token`, under the policy of `selector` (empty: the default);
    /// VERIFY_CTX adds the request's `context`.
    Verify {
        /// Audience selector; empty for the default policy.
        selector: Bytes,
        /// The token bytes.
        token: Bytes,
        /// The request the token came with (VERIFY_CTX only).
        context: Option<Box<WireContext>>,
    },
    /// Liveness check.
    Ping,
    /// Revoke a token or a subject's tokens: `body` is a JSON object (see
    /// `docs/protocol.md`), parsed by the server.
    Revoke {
        /// The JSON request.
        body: Bytes,
    },
}

/// Why jwtd could not decide (status UNDECIDED): the pipeline's own type;
/// its code on the wire is [`cause_code`].
pub use crate::request::Cause;

/// An undecided cause's code on the wire (`docs/protocol.md`).
pub fn cause_code(cause: Cause) -> u16 {
    match cause {
        Cause::NoKeys => 1,
        Cause::Overloaded => 2,
        Cause::RevocationUnavailable => 3,
    }
}

/// The cause a code stands for, if any (clients decode replies).
fn cause_from_code(code: u16) -> Option<Cause> {
    [
        Cause::NoKeys,
        Cause::Overloaded,
        Cause::RevocationUnavailable,
    ]
    .into_iter()
    .find(|c| cause_code(*c) == code)
}

/// A rejection reason's code on the wire (`docs/protocol.md`): part of the
/// protocol, so a code once given is never reused.
pub fn reject_code(reason: Reject) -> u16 {
    match reason {
        Reject::TooLarge => 1,
        Reject::Malformed => 2,
        Reject::Base64 => 3,
        Reject::Header => 4,
        Reject::Payload => 5,
        Reject::Jwe => 6,
        Reject::Unencoded => 7,
        Reject::Crit => 8,
        Reject::AlgNone => 9,
        Reject::AlgorithmNotAllowed => 10,
        Reject::KeyAlgorithmMismatch => 11,
        Reject::UnknownKey => 12,
        Reject::BadSignature => 13,
        Reject::Expired => 14,
        Reject::NotYetValid => 15,
        Reject::IssuedInFuture => 16,
        Reject::LifetimeTooLong => 17,
        Reject::Issuer => 18,
        Reject::Audience => 19,
        Reject::MissingClaim => 20,
        Reject::ClaimType => 21,
        Reject::Type => 22,
        Reject::UnknownIssuer => 23,
        Reject::Revoked => 24,
        Reject::DpopInvalid => 25,
        Reject::DpopReplay => 26,
        Reject::DpopMismatch => 27,
        Reject::BearerDowngrade => 28,
        Reject::CnfMismatch => 29,
        Reject::BindingMismatch => 30,
        Reject::JweDecrypt => 31,
    }
}

/// The reason with this wire code.
pub fn reject_from_code(code: u16) -> Option<Reject> {
    Reject::ALL.into_iter().find(|r| reject_code(*r) == code)
}

/// Anomaly flags and their bits in a VALID reply's code (`docs/protocol.md`).
const ANOMALY_BITS: [(Anomalies, u16); 4] = [
    (Anomalies::EMBEDDED_JWK, 1),
    (Anomalies::JKU, 2),
    (Anomalies::X5U, 4),
    (Anomalies::X5C, 8),
];

/// The anomalies' bits in a VALID reply's code.
pub fn anomaly_bits(anomalies: Anomalies) -> u16 {
    ANOMALY_BITS
        .iter()
        .filter(|(a, _)| anomalies.contains(*a))
        .fold(0, |bits, (_, bit)| bits | bit)
}

/// The anomalies a VALID reply's code carries (unknown bits dropped).
pub fn anomalies_from_bits(bits: u16) -> Anomalies {
    let mut anomalies = Anomalies::NONE;
    for (a, bit) in ANOMALY_BITS {
        if bits & bit != 0 {
            anomalies.insert(a);
        }
    }
    anomalies
}

/// Request-level errors (status ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Unsupported version byte.
    BadVersion,
    /// Unknown op byte.
    BadOp,
    /// Reserved flags set.
    BadFlags,
    /// Length above the maximum frame size.
    FrameTooLarge,
    /// Length below the fixed header, or a body too short for its op.
    FrameTooShort,
    /// The selector names no configured audience.
    UnknownSelector,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A REVOKE body that is not a revocation request.
    BadRevoke,
    /// The revocation store refused or could not be reached.
    RevokeFailed,
    /// A REVOKE for an issuer this daemon does not serve: it would match
    /// nothing.
    UnknownIssuer,
    /// A REVOKE that can match no token (a `jti` whose `exp` is more than
    /// 300 s past).
    NothingToRevoke,
    /// A VERIFY_CTX whose context fields are malformed, unknown or
    /// repeated.
    BadContext,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    /// The message sent in the ERROR reply's body (and shown by `Display`).
    pub fn message(self) -> &'static str {
        match self {
            ProtocolError::BadVersion => "unsupported protocol version",
            ProtocolError::BadOp => "unknown op",
            ProtocolError::BadFlags => "reserved flags must be zero",
            ProtocolError::FrameTooLarge => "frame too large",
            ProtocolError::FrameTooShort => "frame too short",
            ProtocolError::UnknownSelector => "unknown selector",
            ProtocolError::ShuttingDown => "shutting down",
            ProtocolError::BadRevoke => {
                "bad revoke request: expected {\"jti\",\"exp\"} or {\"sub\"[,\"before\"]}, optional \"iss\""
            }
            ProtocolError::RevokeFailed => "the revocation store could not be written",
            ProtocolError::UnknownIssuer => {
                "this daemon does not serve that issuer: the revocation would match nothing"
            }
            ProtocolError::NothingToRevoke => {
                "the revocation can match no token: its exp is more than 300 s past"
            }
            ProtocolError::BadContext => {
                "bad VERIFY_CTX context: a field is malformed, unknown or repeated"
            }
        }
    }

    /// Protocol code.
    pub fn code(self) -> u16 {
        match self {
            ProtocolError::BadVersion => 1,
            ProtocolError::BadOp => 2,
            ProtocolError::BadFlags => 3,
            ProtocolError::FrameTooLarge => 4,
            ProtocolError::FrameTooShort => 5,
            ProtocolError::UnknownSelector => 6,
            ProtocolError::ShuttingDown => 7,
            ProtocolError::BadRevoke => 8,
            ProtocolError::RevokeFailed => 9,
            ProtocolError::UnknownIssuer => 10,
            ProtocolError::NothingToRevoke => 11,
            ProtocolError::BadContext => 12,
        }
    }

    /// Whether the connection must close after this error: framing errors
    /// leave the byte stream untrustworthy. An unknown op is not one: its
    /// frame was whole, so the stream goes on (a client can fall back from
    /// an op this daemon lacks; daemons before VERIFY_CTX closed here).
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            ProtocolError::BadOp
                | ProtocolError::BadContext
                | ProtocolError::UnknownSelector
                | ProtocolError::BadRevoke
                | ProtocolError::RevokeFailed
                | ProtocolError::UnknownIssuer
                | ProtocolError::NothingToRevoke
        )
    }

    fn from_code(code: u16) -> Option<ProtocolError> {
        use ProtocolError::*;
        [
            BadVersion,
            BadOp,
            BadFlags,
            FrameTooLarge,
            FrameTooShort,
            UnknownSelector,
            ShuttingDown,
            BadRevoke,
            RevokeFailed,
            UnknownIssuer,
            NothingToRevoke,
            BadContext,
        ]
        .into_iter()
        .find(|e| e.code() == code)
    }
}

/// A reply, as the server builds it and the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Valid; the claims JSON and the header anomalies.
    Valid {
        /// Request id.
        id: u32,
        /// Answered from the verified-result cache.
        cached: bool,
        /// Key-carrying headers that were present (and ignored).
        anomalies: Anomalies,
        /// The payload JSON.
        claims: Bytes,
    },
    /// Invalid, with the reason.
    Invalid {
        /// Request id.
        id: u32,
        /// Why.
        reason: Reject,
    },
    /// Could not decide.
    Undecided {
        /// Request id.
        id: u32,
        /// Why not.
        cause: Cause,
    },
    /// Answer to PING.
    Pong {
        /// Request id.
        id: u32,
        /// Whether the daemon is ready: every issuer has a key set and none
        /// is staler than `max_stale` (code field: `0` ready, `1` not
        /// ready).
        ready: bool,
    },
    /// A REVOKE was carried out; the body is the key written.
    Done {
        /// Request id.
        id: u32,
        /// The revocation key.
        key: Bytes,
    },
    /// The request was not understood.
    Error {
        /// Request id (0 if unreadable).
        id: u32,
        /// What went wrong.
        error: ProtocolError,
    },
    /// A well-framed reply with a status or code this build does not know
    /// (a newer daemon): kept, so one new reason never breaks a connection.
    Other {
        /// Request id.
        id: u32,
        /// Status byte.
        status: u8,
        /// Code field.
        code: u16,
        /// Body.
        body: Bytes,
    },
}

/// VALID reply code bit: answered from the cache.
const CACHED_BIT: u16 = 0x8000;

const ST_VALID: u8 = 0;
const ST_INVALID: u8 = 1;
const ST_UNDECIDED: u8 = 2;
const ST_PONG: u8 = 3;
const ST_ERROR: u8 = 4;
const ST_DONE: u8 = 5;

impl Reply {
    /// The request id this reply answers.
    pub fn id(&self) -> u32 {
        match self {
            Reply::Valid { id, .. }
            | Reply::Invalid { id, .. }
            | Reply::Undecided { id, .. }
            | Reply::Pong { id, .. }
            | Reply::Done { id, .. }
            | Reply::Error { id, .. }
            | Reply::Other { id, .. } => *id,
        }
    }

    /// Appends the encoded reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let (status, code, body): (u8, u16, &[u8]) = match self {
            Reply::Valid {
                cached,
                anomalies,
                claims,
                ..
            } => (
                ST_VALID,
                anomaly_bits(*anomalies) | if *cached { CACHED_BIT } else { 0 },
                claims,
            ),
            Reply::Invalid { reason, .. } => {
                (ST_INVALID, reject_code(*reason), reason.as_str().as_bytes())
            }
            Reply::Undecided { cause, .. } => {
                (ST_UNDECIDED, cause_code(*cause), cause.as_str().as_bytes())
            }
            Reply::Pong { ready, .. } => (ST_PONG, u16::from(!*ready), &[]),
            Reply::Done { key, .. } => (ST_DONE, 0, key),
            Reply::Error { error, .. } => (ST_ERROR, error.code(), error.message().as_bytes()),
            Reply::Other {
                status, code, body, ..
            } => (*status, *code, body),
        };
        put_header(out, body.len(), status, code, self.id());
        out.put_slice(body);
    }
}

fn put_header(out: &mut BytesMut, body_len: usize, kind: u8, code: u16, id: u32) {
    out.reserve(4 + HEADER_LEN + body_len);
    // Callers bound bodies by the maximum frame size, far below 4 GiB.
    out.put_u32(u32::try_from(HEADER_LEN + body_len).unwrap_or(u32::MAX));
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16(code);
    out.put_u32(id);
}

/// A request that could not be decoded: the error and the id to answer
/// (0 when the header itself was unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Request id, when it could be read.
    pub id: u32,
    /// What is wrong.
    pub error: ProtocolError,
}

/// Decodes one request from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(request))` after
/// removing its frame from `buf`. On an error nothing can be trusted after
/// this point: the caller answers the error and, when
/// [`ProtocolError::is_fatal`], closes the connection.
///
/// # Errors
///
/// Any framing or header problem, see [`ProtocolError`].
pub fn decode_request(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Request>, DecodeError> {
    let Some(len) = frame_len(buf, max_frame)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(4 + len).freeze();
    frame.advance(4);
    let (version, op, flags, id) = (
        frame[0],
        frame[1],
        u16::from_be_bytes([frame[2], frame[3]]),
        u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    );
    let fail = |error| Err(DecodeError { id, error });
    if version != VERSION {
        return fail(ProtocolError::BadVersion);
    }
    if flags != 0 {
        return fail(ProtocolError::BadFlags);
    }
    frame.advance(HEADER_LEN);
    let op = match op {
        OP_PING => Op::Ping,
        OP_REVOKE => Op::Revoke { body: frame },
        OP_VERIFY => {
            let Some((&sel_len, rest)) = frame.split_first() else {
                return fail(ProtocolError::FrameTooShort);
            };
            let sel_len = usize::from(sel_len);
            if rest.len() < sel_len {
                return fail(ProtocolError::FrameTooShort);
            }
            let selector = frame.slice(1..1 + sel_len);
            let token = frame.slice(1 + sel_len..);
            Op::Verify {
                selector,
                token,
                context: None,
            }
        }
        OP_VERIFY_CTX => {
            // sel_len u8, selector, token_len u16, token, fields.
            let Some(&sel_len) = frame.first() else {
                return fail(ProtocolError::FrameTooShort);
            };
            let sel_end = 1 + usize::from(sel_len);
            let Some(len) = frame.get(sel_end..sel_end + 2) else {
                return fail(ProtocolError::FrameTooShort);
            };
            let token_end = sel_end + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            if frame.len() < token_end {
                return fail(ProtocolError::FrameTooShort);
            }
            let selector = frame.slice(1..sel_end);
            let token = frame.slice(sel_end + 2..token_end);
            let Some(context) = WireContext::parse(frame.slice(token_end..)) else {
                return fail(ProtocolError::BadContext);
            };
            Op::Verify {
                selector,
                token,
                context: Some(Box::new(context)),
            }
        }
        _ => return fail(ProtocolError::BadOp),
    };
    Ok(Some(Request { id, op }))
}

/// Checks the length prefix: `Ok(None)` until the whole frame is buffered.
fn frame_len(buf: &BytesMut, max_frame: usize) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let error = if len > max_frame {
        ProtocolError::FrameTooLarge
    } else if len < HEADER_LEN {
        ProtocolError::FrameTooShort
    } else if buf.len() < 4 + len {
        return Ok(None);
    } else {
        return Ok(Some(len));
    };
    // A frame long enough to hold an id names it at bytes 8..12; answer it
    // when it has arrived. A too-short frame has no id: bytes past its end
    // belong to whatever follows.
    let id = if len >= HEADER_LEN && buf.len() >= 12 {
        u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]])
    } else {
        0
    };
    Err(DecodeError { id, error })
}

/// Appends a VERIFY request to `out`.
///
/// # Panics
///
/// If `selector` is longer than 255 bytes.
pub fn encode_verify(out: &mut BytesMut, id: u32, selector: &[u8], token: &[u8]) {
    let sel_len = u8::try_from(selector.len()).expect("selector is at most 255 bytes");
    put_header(out, 1 + selector.len() + token.len(), OP_VERIFY, 0, id);
    out.put_u8(sel_len);
    out.put_slice(selector);
    out.put_slice(token);
}

/// Appends a VERIFY_CTX request to `out`: a VERIFY with the request's
/// context.
///
/// # Panics
///
/// If `selector` is longer than 255 bytes, or `token` or a field longer
/// than 65535.
pub fn encode_verify_ctx(
    out: &mut BytesMut,
    id: u32,
    selector: &[u8],
    token: &[u8],
    context: &WireContext,
) {
    let sel_len = u8::try_from(selector.len()).expect("selector is at most 255 bytes");
    let token_len = u16::try_from(token.len()).expect("token is at most 65535 bytes");
    let fields = context.fields();
    let body = 1
        + selector.len()
        + 2
        + token.len()
        + fields.iter().map(|(_, v)| 3 + v.len()).sum::<usize>();
    put_header(out, body, OP_VERIFY_CTX, 0, id);
    out.put_u8(sel_len);
    out.put_slice(selector);
    out.put_u16(token_len);
    out.put_slice(token);
    for (kind, value) in fields {
        out.put_u8(kind);
        out.put_u16(u16::try_from(value.len()).expect("a field is at most 65535 bytes"));
        out.put_slice(&value);
    }
}

/// Appends a PING request to `out`.
pub fn encode_ping(out: &mut BytesMut, id: u32) {
    put_header(out, 0, OP_PING, 0, id);
}

/// Reads a REVOKE request body (the codec owns the wire, bodies included): a JSON object, either `{"jti": S, "exp": N}`
/// or `{"sub": S, "before": N}` (`before` defaults to `now`), with an
/// optional `"iss": S`. Returns the issuer and what to revoke.
pub fn parse_revoke(body: &[u8], now: i64) -> Option<(Option<String>, Revoke)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    // Strict: a misspelt or mistyped member must not turn "this token" into
    // "every token of this user".
    if obj
        .keys()
        .any(|k| !matches!(k.as_str(), "jti" | "exp" | "sub" | "before" | "iss"))
    {
        return None;
    }
    let text = |name: &str| match obj.get(name) {
        None => Some(None),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Some(s.clone())),
        Some(_) => None,
    };
    let number = |name: &str| match obj.get(name) {
        None => Some(None),
        Some(v) => v.as_i64().map(Some),
    };
    let iss = text("iss")?;
    let what = match (
        text("jti")?,
        text("sub")?,
        number("exp")?,
        number("before")?,
    ) {
        (Some(jti), None, Some(exp), None) => Revoke::Jti { jti, exp },
        (None, Some(sub), None, before) => Revoke::Subject {
            sub,
            before: before.unwrap_or(now),
        },
        _ => return None,
    };
    Some((iss, what))
}

/// Encodes a REVOKE request with its JSON `body`.
pub fn encode_revoke(out: &mut BytesMut, id: u32, body: &[u8]) {
    put_header(out, body.len(), OP_REVOKE, 0, id);
    out.put_slice(body);
}

/// Decodes one reply from the front of `buf` (client side).
///
/// # Errors
///
/// A malformed reply: the connection is unusable.
pub fn decode_reply(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Reply>, DecodeError> {
    let Some(len) = frame_len(buf, max_frame)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(4 + len).freeze();
    frame.advance(4);
    let (version, status, code, id) = (
        frame[0],
        frame[1],
        u16::from_be_bytes([frame[2], frame[3]]),
        u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    );
    if version != VERSION {
        return Err(DecodeError {
            id,
            error: ProtocolError::BadVersion,
        });
    }
    frame.advance(HEADER_LEN);
    // Statuses and codes a newer daemon may add are kept as `Other`.
    let known = match status {
        ST_VALID => (code & !CACHED_BIT <= 0xff).then(|| Reply::Valid {
            id,
            cached: code & CACHED_BIT != 0,
            anomalies: anomalies_from_bits(code & !CACHED_BIT),
            claims: frame.clone(),
        }),
        ST_INVALID => reject_from_code(code).map(|reason| Reply::Invalid { id, reason }),
        ST_UNDECIDED => cause_from_code(code).map(|cause| Reply::Undecided { id, cause }),
        // Any code but 0 reads as not ready: a newer daemon may say why.
        ST_PONG => Some(Reply::Pong {
            id,
            ready: code == 0,
        }),
        ST_ERROR => ProtocolError::from_code(code).map(|error| Reply::Error { id, error }),
        ST_DONE => Some(Reply::Done {
            id,
            key: frame.clone(),
        }),
        _ => None,
    };
    Ok(Some(known.unwrap_or(Reply::Other {
        id,
        status,
        code,
        body: frame,
    })))
}

#[cfg(test)]
mod tests;
