//! Strict JSON for JOSE headers and JWT payloads, on top of serde_json.
//!
//! serde_json already enforces RFC 8259 syntax and UTF-8 (including lone
//! surrogate escapes) and rejects trailing data. What it does not do, and this
//! module adds, is: refuse duplicate member names at any depth (RFC 7515 4 and
//! RFC 7519 4 allow either rejecting or last-wins; last-wins lets a token say
//! two things to two parsers, so jwtd rejects), bound nesting depth (a tighter,
//! configurable bound than serde_json's fixed 128), and record *type* problems
//! of registered members as data rather than as parse errors, so a claim of the
//! wrong type gets its own reject reason after the signature is checked.
//!
//! It does not build a value tree. The header and payload visitors keep
//! borrowed slices of the members jwtd reads; everything else is walked once
//! and dropped. Member names without escapes are compared as borrowed slices;
//! names with escapes are unescaped first, so `"a"` and `"\u0061"` collide.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::outcome::Anomalies;

/// What the core needs to know about one JSON value: strings and numbers are
/// kept, containers are only validated (string arrays are kept on request,
/// for `aud` and `crit`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shallow<'de> {
    Str(Cow<'de, str>),
    /// An integer, saturated into `i64` (NumericDates beyond it are absurd
    /// but valid: `nbf: 2^63-1` must read as "far future", not fail).
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// An array whose elements are all strings, when collection was asked for.
    StrArray(Vec<Cow<'de, str>>),
    /// Any other array.
    Array,
    Object,
}

/// Walks one value, enforcing depth and duplicate names below it.
#[derive(Clone, Copy)]
pub(crate) struct ValueSeed {
    /// Containers still allowed below this point.
    depth: u32,
    /// Collect an all-string array into [`Shallow::StrArray`].
    collect: bool,
}

impl ValueSeed {
    fn child(self) -> ValueSeed {
        ValueSeed {
            depth: self.depth - 1,
            collect: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Shallow<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Shallow<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Shallow::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Shallow::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Shallow::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Shallow::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Shallow::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Shallow::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Shallow::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shallow::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.depth == 0 {
            return Err(de::Error::custom("JSON nested too deeply"));
        }
        let mut strings = self.collect.then(Vec::new);
        while let Some(v) = seq.next_element_seed(self.child())? {
            match (v, &mut strings) {
                (Shallow::Str(s), Some(list)) => list.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Shallow::Array, Shallow::StrArray))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth == 0 {
            return Err(de::Error::custom("JSON nested too deeply"));
        }
        let mut names = Names::default();
        while let Some(Name(name)) = map.next_key()? {
            names.insert(name)?;
            map.next_value_seed(self.child())?;
        }
        Ok(Shallow::Object)
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The member names of one object seen so far. Linear scan while small (the
/// common case: a handful of members), a hash set beyond that so an object
/// with thousands of members cannot make duplicate detection quadratic.
struct Names<'de> {
    small: Vec<Cow<'de, str>>,
    large: Option<HashSet<Cow<'de, str>>>,
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names {
            // One allocation up front instead of regrowing 4 -> 8 -> 16
            // while a typical claims object is read.
            small: Vec::with_capacity(Self::SMALL),
            large: None,
        }
    }
}

impl<'de> Names<'de> {
    const SMALL: usize = 16;

    fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        if self.is_new(name) {
            Ok(())
        } else {
            Err(E::custom("duplicate member name"))
        }
    }

    /// Records `name`; false when it was already there.
    fn is_new(&mut self, name: Cow<'de, str>) -> bool {
        match &mut self.large {
            Some(set) => set.insert(name),
            None if self.small.contains(&name) => false,
            None => {
                self.small.push(name);
                if self.small.len() > Self::SMALL {
                    self.large = Some(self.small.drain(..).collect());
                }
                true
            }
        }
    }
}

/// Why a header or payload is not acceptable JSON. Deliberately opaque: the
/// core maps it to one reject reason and never formats it on the request
/// path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonError {
    /// Not UTF-8 (RFC 8259 8.1).
    #[error("not UTF-8")]
    Utf8,
    /// Syntax, duplicates, depth, or a header member of the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Checks UTF-8 once for the whole text, so serde_json can parse from `&str`
/// and skip its per-string validation (measurably cheaper on the hot path).
fn utf8(bytes: &[u8]) -> Result<&str, JsonError> {
    std::str::from_utf8(bytes).map_err(|_| JsonError::Utf8)
}

/// The JOSE header members jwtd acts on.
#[derive(Debug, Default)]
pub(crate) struct Header<'de> {
    pub alg: Option<Cow<'de, str>>,
    pub kid: Option<Cow<'de, str>>,
    pub typ: Option<Cow<'de, str>>,
    /// `crit` was present (any value: jwtd understands no extension).
    pub crit: bool,
    /// `b64` (RFC 7797), if present.
    pub b64: Option<bool>,
    pub anomalies: Anomalies,
}

/// Parses a header. Errors are opaque: every failure is [`Reject::Header`].
///
/// [`Reject::Header`]: super::Reject::Header
pub(crate) fn parse_header(bytes: &[u8], max_depth: u32) -> Result<Header<'_>, JsonError> {
    let mut de = serde_json::Deserializer::from_str(utf8(bytes)?);
    let header = de.deserialize_map(HeaderVisitor { max_depth })?;
    de.end()?;
    Ok(header)
}

struct HeaderVisitor {
    max_depth: u32,
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let seed = ValueSeed {
            depth: self.max_depth.saturating_sub(1),
            collect: false,
        };
        let mut names = Names::default();
        let mut h = Header::default();
        while let Some(Name(name)) = map.next_key()? {
            let v = map.next_value_seed(seed)?;
            match (&*name, v) {
                ("alg", Shallow::Str(s)) => h.alg = Some(s),
                ("kid", Shallow::Str(s)) => h.kid = Some(s),
                ("typ", Shallow::Str(s)) => h.typ = Some(s),
                ("b64", Shallow::Bool(b)) => h.b64 = Some(b),
                ("alg" | "kid" | "typ" | "b64", _) => {
                    return Err(de::Error::custom("header parameter has the wrong type"));
                }
                ("crit", _) => h.crit = true,
                ("jwk", _) => h.anomalies.insert(Anomalies::EMBEDDED_JWK),
                ("jku", _) => h.anomalies.insert(Anomalies::JKU),
                ("x5u", _) => h.anomalies.insert(Anomalies::X5U),
                ("x5c", _) => h.anomalies.insert(Anomalies::X5C),
                _ => {}
            }
            names.insert(name)?;
        }
        Ok(h)
    }
}

/// A registered claim as found: absent, well-typed, or of the wrong type.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Field<T> {
    #[default]
    Absent,
    Present(T),
    WrongType,
}

impl<T> Field<T> {
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

/// A NumericDate as a JSON number (RFC 7519 2: may be non-integer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// Whether the number lies in `0 ..= max` (fractions included, so
    /// `max + 0.5` is out).
    pub fn in_range(self, max: i64) -> bool {
        match self {
            Number::Int(i) => (0..=max).contains(&i),
            // Every bound jwtd uses is exact in an f64 (below 2^53).
            Number::Float(f) => (0.0..=max as f64).contains(&f),
        }
    }

    /// Whole seconds, rounding down (for `exp`: never extends validity).
    pub fn floor(self) -> i64 {
        match self {
            Number::Int(i) => i,
            // `as` saturates, which is the right answer for absurd values.
            Number::Float(f) => f.floor() as i64,
        }
    }

    /// Whole seconds, rounding up (for `nbf`/`iat`: never advances validity).
    pub fn ceil(self) -> i64 {
        match self {
            Number::Int(i) => i,
            Number::Float(f) => f.ceil() as i64,
        }
    }
}

/// The payload members jwtd checks, as found.
#[derive(Debug, Default)]
pub(crate) struct Payload<'de> {
    pub iss: Field<Cow<'de, str>>,
    pub sub: Field<Cow<'de, str>>,
    pub jti: Field<Cow<'de, str>>,
    pub aud: Field<Vec<Cow<'de, str>>>,
    pub exp: Field<Number>,
    pub nbf: Field<Number>,
    pub iat: Field<Number>,
    /// `cnf` (RFC 7800): an object, its members as found.
    pub cnf: Field<CnfText<'de>>,
    /// Bit i is set when `required[i]` is present.
    pub required_seen: u64,
}

/// At most this many required claims can be configured (one bit each).
pub const MAX_REQUIRED_CLAIMS: usize = 64;

/// Parses a payload, noting which of `required` are present.
pub(crate) fn parse_payload<'de>(
    bytes: &'de [u8],
    max_depth: u32,
    required: &[Box<str>],
) -> Result<Payload<'de>, JsonError> {
    let mut de = serde_json::Deserializer::from_str(utf8(bytes)?);
    let payload = de.deserialize_map(PayloadVisitor {
        max_depth,
        required,
    })?;
    de.end()?;
    Ok(payload)
}

struct PayloadVisitor<'r> {
    max_depth: u32,
    required: &'r [Box<str>],
}

fn string(v: Shallow<'_>) -> Field<Cow<'_, str>> {
    match v {
        Shallow::Str(s) => Field::Present(s),
        _ => Field::WrongType,
    }
}

fn number(v: Shallow<'_>) -> Field<Number> {
    match v {
        Shallow::Int(i) => Field::Present(Number::Int(i)),
        Shallow::Float(f) => Field::Present(Number::Float(f)),
        _ => Field::WrongType,
    }
}

impl<'de> Visitor<'de> for PayloadVisitor<'_> {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let depth = self.max_depth.saturating_sub(1);
        let mut names = Names::default();
        let mut p = Payload::default();
        while let Some(Name(name)) = map.next_key()? {
            if &*name == "cnf" {
                p.cnf = match map.next_value_seed(CnfSeed(ValueSeed {
                    depth,
                    collect: false,
                }))? {
                    Some(cnf) => Field::Present(cnf),
                    None => Field::WrongType,
                };
                names.insert(name)?;
                continue;
            }
            let collect = &*name == "aud";
            let v = map.next_value_seed(ValueSeed { depth, collect })?;
            match &*name {
                "iss" => p.iss = string(v),
                "sub" => p.sub = string(v),
                "jti" => p.jti = string(v),
                "exp" => p.exp = number(v),
                "nbf" => p.nbf = number(v),
                "iat" => p.iat = number(v),
                "aud" => {
                    p.aud = match v {
                        Shallow::Str(s) => Field::Present(vec![s]),
                        Shallow::StrArray(list) => Field::Present(list),
                        _ => Field::WrongType,
                    }
                }
                _ => {}
            }
            // Every matching position: a name listed twice must not leave
            // one of its bits forever unset.
            for (i, r) in self.required.iter().take(MAX_REQUIRED_CLAIMS).enumerate() {
                if **r == *name {
                    p.required_seen |= 1 << i;
                }
            }
            names.insert(name)?;
        }
        Ok(p)
    }
}

/// The members of a `cnf` claim (RFC 7800 3.1) as found: the two
/// confirmation methods jwtd checks, and whether there were others.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct CnfText<'de> {
    /// `jkt` (RFC 9449 6.1): the DPoP key's thumbprint.
    pub jkt: Field<Cow<'de, str>>,
    /// `x5t#S256` (RFC 8705 3.1): the client certificate's thumbprint.
    pub x5t_s256: Field<Cow<'de, str>>,
    /// Any other member (`jwk`, `kid`, `jku`...): a method jwtd cannot check.
    pub other: bool,
}

/// Reads a `cnf` value: `Some` for an object (depth and duplicates enforced
/// like everywhere else), `None` for any other JSON value.
struct CnfSeed(ValueSeed);

impl<'de> DeserializeSeed<'de> for CnfSeed {
    type Value = Option<CnfText<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0.depth {
            // No room for an object here: walk it as a value (which fails
            // on a container) and call anything else the wrong type.
            0 => self.0.deserialize(d).map(|_| None),
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for CnfSeed {
    type Value = Option<CnfText<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a cnf value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = Names::default();
        let mut cnf = CnfText::default();
        while let Some(Name(name)) = map.next_key()? {
            let v = map.next_value_seed(self.0.child())?;
            match &*name {
                "jkt" => cnf.jkt = string(v),
                "x5t#S256" => cnf.x5t_s256 = string(v),
                _ => cnf.other = true,
            }
            names.insert(name)?;
        }
        Ok(Some(cnf))
    }
}

// ---------------------------------------------------------------------------
// JWK sets.

/// A JWK set document as [`parse_jwk_set`] read it.
#[derive(Debug)]
pub(crate) struct JwkSetText {
    /// The whole document, as `serde_json` would have read it.
    pub value: serde_json::Value,
    /// One entry per element of the top-level `keys` array (when it is an
    /// array): the first member name found twice in that element, at any
    /// depth inside it.
    pub duplicates: Vec<Option<String>>,
}

/// Parses a JWK set document with the duplicate-member rule tokens follow.
///
/// A member name found twice *inside one element* of the top-level `keys`
/// array is recorded for that element ([`JwkSetText::duplicates`]): the
/// caller skips that key and names it, and the rest of the set stays usable.
/// A name found twice anywhere else (two `keys` members in the top-level
/// object, or a duplicate inside another top-level member) is an error for
/// the whole document, since no key of it can be read one way only.
pub(crate) fn parse_jwk_set(bytes: &[u8]) -> Result<JwkSetText, serde_json::Error> {
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Build(Role::Document(&mut duplicates)).deserialize(&mut de)?;
    de.end()?;
    Ok(JwkSetText { value, duplicates })
}

/// Where a value sits in a JWK set document, which decides what a duplicate
/// member name means there.
enum Role<'a> {
    /// Outside any key: a duplicate refuses the document.
    Strict,
    /// The document itself: if an object, its `keys` member is read as
    /// [`Role::Keys`].
    Document(&'a mut Vec<Option<String>>),
    /// The top-level `keys` member: if an array, each element is read as
    /// [`Role::Jwk`] with its own entry in this list.
    Keys(&'a mut Vec<Option<String>>),
    /// Inside one key: the first duplicate name is recorded here and the
    /// later value dropped.
    Jwk(&'a mut Option<String>),
}

/// Builds a `serde_json::Value` (serde_json's recursion limit still
/// applies), enforcing the duplicate rule of its [`Role`].
struct Build<'a>(Role<'a>);

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // JSON text has no NaN or infinity: the fallback is unreachable.
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        match self.0 {
            Role::Keys(list) => loop {
                let n = list.len();
                list.push(None);
                match seq.next_element_seed(Build(Role::Jwk(&mut list[n])))? {
                    Some(v) => items.push(v),
                    None => {
                        list.pop();
                        break;
                    }
                }
            },
            Role::Jwk(slot) => {
                while let Some(v) = seq.next_element_seed(Build(Role::Jwk(&mut *slot)))? {
                    items.push(v);
                }
            }
            Role::Strict | Role::Document(_) => {
                while let Some(v) = seq.next_element_seed(Build(Role::Strict))? {
                    items.push(v);
                }
            }
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut role = self.0;
        let mut names = Names::default();
        let mut members = serde_json::Map::new();
        while let Some(Name(name)) = map.next_key()? {
            let fresh = names.is_new(name.clone());
            let child = match &mut role {
                Role::Jwk(slot) => {
                    if !fresh && slot.is_none() {
                        **slot = Some(name.clone().into_owned());
                    }
                    Role::Jwk(slot)
                }
                _ if !fresh => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member {:?}",
                        &*name
                    )));
                }
                Role::Document(list) if name == "keys" => Role::Keys(list),
                _ => Role::Strict,
            };
            let value = map.next_value_seed(Build(child))?;
            if fresh {
                members.insert(name.into_owned(), value);
            }
        }
        Ok(serde_json::Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Result<Header<'_>, JsonError> {
        parse_header(s.as_bytes(), 4)
    }

    fn payload(s: &str) -> Result<Payload<'_>, JsonError> {
        parse_payload(s.as_bytes(), 4, &[])
    }

    #[test]
    fn header_reads_registered_members() {
        let h =
            header(r#"{"alg":"ES256","kid":"k\u0031","typ":"JWT","jku":"x","x5c":[]}"#).unwrap();
        assert_eq!(h.alg.as_deref(), Some("ES256"));
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(h.typ.as_deref(), Some("JWT"));
        assert!(h.anomalies.contains(Anomalies::JKU));
        assert!(h.anomalies.contains(Anomalies::X5C));
        assert!(!h.crit);
    }

    #[test]
    fn header_members_of_wrong_type_are_errors() {
        assert!(header(r#"{"alg":256}"#).is_err());
        assert!(header(r#"{"alg":"RS256","kid":1}"#).is_err());
        assert!(header(r#"{"alg":"RS256","typ":null}"#).is_err());
        assert!(header(r#"{"alg":"RS256","b64":"false"}"#).is_err());
    }

    #[test]
    fn duplicates_are_rejected_at_every_depth_and_through_escapes() {
        assert!(header(r#"{"alg":"HS256","alg":"none"}"#).is_err());
        assert!(header(r#"{"alg":"HS256","\u0061lg":"none"}"#).is_err());
        assert!(payload(r#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(payload(r#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(payload(r#"{"a":{"b":1},"c":{"b":2}}"#).is_ok());
    }

    #[test]
    fn duplicates_are_found_in_large_objects() {
        let mut s = String::from("{");
        for i in 0..100 {
            s.push_str(&format!("\"m{i}\":0,"));
        }
        s.push_str("\"m7\":1}");
        assert!(payload(&s).is_err());
        assert!(payload(&s.replace("\"m7\":1", "\"m100\":1")).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        // Depth 4 allows the top object plus three nested containers.
        assert!(payload(r#"{"a":[[{}]]}"#).is_ok());
        assert!(payload(r#"{"a":[[[{}]]]}"#).is_err());
        assert!(header(r#"{"alg":"RS256","x":[[[[]]]]}"#).is_err());
    }

    #[test]
    fn top_level_must_be_an_object() {
        for s in [
            "[]",
            "\"x\"",
            "1",
            "null",
            "",
            "{} {}",
            "{\"a\":1,}",
            "{'a':1}",
        ] {
            assert!(payload(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn claim_types_are_recorded_not_fatal() {
        let p = payload(r#"{"iss":true,"exp":"1","nbf":null,"aud":["a",1],"sub":"s"}"#).unwrap();
        assert_eq!(p.iss, Field::WrongType);
        assert_eq!(p.exp, Field::WrongType);
        assert_eq!(p.nbf, Field::WrongType);
        assert_eq!(p.aud, Field::WrongType);
        assert_eq!(p.sub, Field::Present(Cow::Borrowed("s")));
    }

    #[test]
    fn numeric_dates_round_conservatively() {
        let p = payload(r#"{"exp":10.5,"nbf":9.5,"iat":18446744073709551615}"#).unwrap();
        let Field::Present(exp) = p.exp else { panic!() };
        let Field::Present(nbf) = p.nbf else { panic!() };
        assert_eq!(exp.floor(), 10);
        assert_eq!(nbf.ceil(), 10);
        assert_eq!(p.iat, Field::Present(Number::Int(i64::MAX)));
    }

    #[test]
    fn aud_string_or_array() {
        assert_eq!(
            payload(r#"{"aud":"a"}"#).unwrap().aud,
            Field::Present(vec![Cow::Borrowed("a")])
        );
        assert_eq!(
            payload(r#"{"aud":["a","b"]}"#).unwrap().aud,
            Field::Present(vec![Cow::Borrowed("a"), Cow::Borrowed("b")])
        );
        assert_eq!(
            payload(r#"{"aud":[]}"#).unwrap().aud,
            Field::Present(vec![])
        );
    }

    #[test]
    fn required_claims_are_tracked() {
        let req: Vec<Box<str>> = vec!["exp".into(), "scope".into(), "tenant".into()];
        let p = parse_payload(br#"{"exp":1,"tenant":"t"}"#, 4, &req).unwrap();
        assert_eq!(p.required_seen, 0b101);
    }

    #[test]
    fn jwk_set_duplicates_inside_a_key_are_recorded_per_key() {
        let text = parse_jwk_set(
            br#"{"keys":[{"kid":"a","kty":"EC"},{"kid":"b","kty":"EC","kty":"oct"},{"kid":"c","x":{"y":1,"\u0079":2}}]}"#,
        )
        .unwrap();
        assert_eq!(
            text.duplicates,
            [None, Some("kty".to_owned()), Some("y".to_owned())]
        );
        // The first value is kept, the later one dropped.
        assert_eq!(text.value["keys"][1]["kty"], "EC");
        assert_eq!(text.value["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn jwk_set_duplicates_outside_the_keys_refuse_the_document() {
        for doc in [
            r#"{"keys":[],"keys":[{"kty":"oct"}]}"#,
            r#"{"keys":[],"\u006beys":[]}"#,
            r#"{"keys":[],"meta":{"a":1,"a":2}}"#,
            r#"[{"a":1,"a":2}]"#,
        ] {
            let e = parse_jwk_set(doc.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("duplicate member"), "{doc}: {e}");
        }
    }

    #[test]
    fn jwk_set_reads_like_serde_json_without_duplicates() {
        let doc = r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB","n2":[1,-2,3.5,null,true]}],"x":{}}"#;
        let text = parse_jwk_set(doc.as_bytes()).unwrap();
        let plain: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(text.value, plain);
        assert_eq!(text.duplicates, [None]);
        // Not an object, or "keys" not an array: read, nothing recorded.
        assert!(parse_jwk_set(b"[1]").unwrap().duplicates.is_empty());
        assert!(
            parse_jwk_set(br#"{"keys":{"a":1}}"#)
                .unwrap()
                .duplicates
                .is_empty()
        );
        assert!(parse_jwk_set(b"{} x").is_err());
    }

    #[test]
    fn invalid_utf8_and_lone_surrogates_are_rejected() {
        assert!(parse_payload(b"{\"a\":\"\xff\"}", 4, &[]).is_err());
        assert!(payload(r#"{"a":"\ud800"}"#).is_err());
    }
}
