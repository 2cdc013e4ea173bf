//! The one list of `jwtd serve` settings. Each entry declares a setting
//! once: its TOML key (the field name), its kind, its flag, its `JWTD_*`
//! variable, the topic it is shown under in `jwtd serve --help`, its default
//! and, in its doc comment, what it is for. From that list come
//! [`RawConfig`] and [`RawIssuer`] (which of the settings an `[[issuers]]`
//! table takes, and which it inherits), the readers of flags, environment
//! and file, the command line (`src/cli/serve.rs` builds its flags from
//! [`SETTINGS`]), and the check of `docs/configuration.md`.
//!
//! Adding a setting is adding an entry here, a row in
//! `docs/configuration.md` (a test fails until it is there) and its
//! validation in the stage that types it.
//!
//! What this module deliberately does not know: what a value means. Every
//! value is text here; `validate` and its siblings type and check it.

/// How a setting's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One value: a string (or bare integer or boolean) in the file.
    Text,
    /// `true` or `false` (also `1`, `0`); on the command line a flag that
    /// takes no value (`--dev`).
    Switch,
    /// Several values: an array in the file, comma-separated in the
    /// environment, a repeatable and comma-separated flag.
    List,
    /// `name=value` pairs: a table in the file, a list of `name=value`
    /// items elsewhere.
    Pairs,
}

/// Where a setting may be written, and what `[[issuers]]` tables do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The daemon as a whole: the top level of the file only.
    Daemon,
    /// An issuer's name or key source: the top level for one issuer, else
    /// each `[[issuers]]` table's own (never inherited, and then not
    /// allowed at the top level).
    IssuerSource,
    /// An issuer's token policy: the top level, and `[[issuers]]` tables,
    /// which inherit the top-level value when they leave it unset.
    IssuerPolicy,
}

/// The topic of a setting: a heading of `jwtd serve --help`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    /// Where trusted keys come from and how they are kept current.
    Keys,
    /// What a token must be to be valid.
    Tokens,
    /// The sockets and addresses jwtd listens on.
    Listeners,
    /// What the HTTP and gRPC fronts read from requests and add to them.
    Fronts,
    /// Bounds on what clients can make jwtd hold.
    Limits,
    /// The verified-result cache.
    Cache,
    /// The revocation store.
    Revocation,
    /// The admin listener (metrics, probes) and the log.
    Admin,
    /// The process: threads and shutdown.
    Process,
}

impl Topic {
    /// Every topic, in the order of `--help`.
    pub const ALL: [Topic; 9] = [
        Topic::Keys,
        Topic::Tokens,
        Topic::Listeners,
        Topic::Fronts,
        Topic::Limits,
        Topic::Cache,
        Topic::Revocation,
        Topic::Admin,
        Topic::Process,
    ];

    /// The heading of this topic in `jwtd serve --help`.
    pub fn heading(self) -> &'static str {
        match self {
            Topic::Keys => "Keys",
            Topic::Tokens => "Tokens (policy)",
            Topic::Listeners => "Listeners",
            Topic::Fronts => "Proxy fronts (HTTP, gRPC)",
            Topic::Limits => "Limits",
            Topic::Cache => "Cache",
            Topic::Revocation => "Revocation",
            Topic::Admin => "Admin listener and logging",
            Topic::Process => "Process",
        }
    }
}

/// One setting, as declared in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The TOML key, the field of [`RawConfig`], and the name problems
    /// start with (`leeway: ...`).
    pub key: &'static str,
    /// How its value is written.
    pub kind: Kind,
    /// Where it may be written.
    pub scope: Scope,
    /// Its `--help` heading.
    pub topic: Topic,
    /// The long flag, without its dashes (`audience` for `audiences`: list
    /// flags take one item each, hence singular names).
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The placeholder of its value in `--help`.
    pub value_name: &'static str,
    /// The value that behaves as the setting left unset, when there is one
    /// to write (`None`: unset means "off" or "not checked", or a default
    /// that depends on the environment, as the socket path's).
    pub default: Option<&'static str>,
    /// What the setting is for: the field's doc comment.
    doc: &'static str,
}

impl Setting {
    /// The flag as written on the command line: `--leeway`.
    pub fn flag(&self) -> String {
        format!("--{}", self.flag)
    }

    /// What the setting is for, as one paragraph of plain text (the doc
    /// comment's lines joined, code marks dropped): the `--help` text.
    pub fn help(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end_matches('.')
            .replace('`', "")
    }

    /// The setting called `key`.
    pub fn named(key: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.key == key)
    }
}

/// A value as a source gives it, before it becomes a [`RawConfig`] field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One value.
    Text(String),
    /// Several values, already split.
    List(Vec<String>),
}

/// A field type of [`RawConfig`], made from a [`Value`] of its kind.
pub(super) trait FromValue {
    /// The field's value.
    fn from_value(value: Value) -> Self;
}

impl FromValue for String {
    fn from_value(value: Value) -> Self {
        match value {
            Value::Text(text) => text,
            Value::List(items) => items.join(","),
        }
    }
}

impl FromValue for Vec<String> {
    fn from_value(value: Value) -> Self {
        match value {
            Value::List(items) => items,
            Value::Text(text) => split_list(&text),
        }
    }
}

/// A comma-separated list, items trimmed, empty items dropped: how the
/// environment writes lists.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The [`RawConfig`] field type of a kind.
macro_rules! raw_type {
    (Text) => { Option<String> };
    (Switch) => { Option<String> };
    (List) => { Option<Vec<String>> };
    (Pairs) => { Option<Vec<String>> };
}

/// `Some(default)` or `None`.
macro_rules! optional {
    () => {
        None
    };
    ($default:literal) => {
        Some($default)
    };
}

/// One [`Setting`] constant.
macro_rules! setting {
    ($scope:ident, $key:ident, $kind:ident, [$($doc:literal)+], {
        flag: $flag:literal, env: $env:literal, value: $value:literal, topic: $topic:ident
        $(, default: $default:literal)? $(,)?
    }) => {
        $(#[doc = $doc])+
        pub const $key: Setting = Setting {
            key: stringify!($key),
            kind: Kind::$kind,
            scope: Scope::$scope,
            topic: Topic::$topic,
            flag: $flag,
            env: $env,
            value_name: $value,
            default: optional!($($default)?),
            doc: concat!($($doc, "\n"),+),
        };
    };
}

/// Generates, from the three groups of the list: [`RawConfig`],
/// [`RawIssuer`], one [`Setting`] constant per setting (module `s`),
/// [`SETTINGS`], and the field-by-field code (read, merge, inherit).
macro_rules! settings {
    (
        issuer_source { $( $(#[doc = $sdoc:literal])+ $skey:ident: $skind:ident $sattrs:tt, )* }
        issuer_policy { $( $(#[doc = $pdoc:literal])+ $pkey:ident: $pkind:ident $pattrs:tt, )* }
        daemon { $( $(#[doc = $ddoc:literal])+ $dkey:ident: $dkind:ident $dattrs:tt, )* }
    ) => {
        /// Every setting as text, `None` when not given: the first stage,
        /// as close to the flags, the environment and the file as possible.
        /// Lists are already split.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct RawConfig {
            $( $(#[doc = $sdoc])+ pub $skey: raw_type!($skind), )*
            $( $(#[doc = $pdoc])+ pub $pkey: raw_type!($pkind), )*
            $( $(#[doc = $ddoc])+ pub $dkey: raw_type!($dkind), )*
            /// `[[issuers]]` tables (config file only): several issuers,
            /// each with its own key source and policy.
            pub issuers: Option<Vec<RawIssuer>>,
            /// `[[routes]]` tables (config file only): what a token needs
            /// under a path prefix.
            pub routes: Option<Vec<super::RawRoute>>,
            /// `[[bindings]]` tables (config file only): device and address
            /// bindings.
            pub bindings: Option<Vec<super::RawBinding>>,
        }

        /// One `[[issuers]]` table: the settings of scope
        /// [`Scope::IssuerSource`] and [`Scope::IssuerPolicy`]; the policy
        /// settings it leaves unset fall back to the top-level ones.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct RawIssuer {
            $( $(#[doc = $sdoc])+ pub $skey: raw_type!($skind), )*
            $( $(#[doc = $pdoc])+ pub $pkey: raw_type!($pkind), )*
        }

        /// One constant per setting, named by its key.
        #[allow(non_upper_case_globals)]
        pub(crate) mod s {
            use super::{Kind, Scope, Setting, Topic};
            $( setting!(IssuerSource, $skey, $skind, [$($sdoc)+], $sattrs); )*
            $( setting!(IssuerPolicy, $pkey, $pkind, [$($pdoc)+], $pattrs); )*
            $( setting!(Daemon, $dkey, $dkind, [$($ddoc)+], $dattrs); )*
        }

        /// Every setting, in the order of the list.
        pub static SETTINGS: &[Setting] = &[
            $( s::$skey, )*
            $( s::$pkey, )*
            $( s::$dkey, )*
        ];

        impl RawConfig {
            /// Reads every setting through `get`, which returns what one
            /// source gives for a setting: the environment
            /// ([`RawConfig::from_env`]), the file
            /// ([`RawConfig::from_toml`]), or the command line (the binary
            /// reads its flags, made from [`SETTINGS`], this way).
            pub fn read(mut get: impl FnMut(&'static Setting) -> Option<Value>) -> RawConfig {
                RawConfig {
                    $( $skey: get(&s::$skey).map(FromValue::from_value), )*
                    $( $pkey: get(&s::$pkey).map(FromValue::from_value), )*
                    $( $dkey: get(&s::$dkey).map(FromValue::from_value), )*
                    issuers: None,
                    routes: None,
                    bindings: None,
                }
            }

            /// The names (TOML keys) of the settings this source gives.
            pub fn given(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.$skey.is_some() { names.push(stringify!($skey)); } )*
                $( if self.$pkey.is_some() { names.push(stringify!($pkey)); } )*
                $( if self.$dkey.is_some() { names.push(stringify!($dkey)); } )*
                if self.issuers.is_some() { names.push("issuers"); }
                if self.routes.is_some() { names.push("routes"); }
                if self.bindings.is_some() { names.push("bindings"); }
                names
            }

            /// Fills every unset setting from `lower` (a lower-precedence
            /// source).
            pub fn or(self, lower: RawConfig) -> RawConfig {
                RawConfig {
                    $( $skey: self.$skey.or(lower.$skey), )*
                    $( $pkey: self.$pkey.or(lower.$pkey), )*
                    $( $dkey: self.$dkey.or(lower.$dkey), )*
                    issuers: self.issuers.or(lower.issuers),
                    routes: self.routes.or(lower.routes),
                    bindings: self.bindings.or(lower.bindings),
                }
            }

            /// The top level's issuer settings: the one issuer when there
            /// are no `[[issuers]]` tables, else what they inherit.
            pub fn top_issuer(&self) -> RawIssuer {
                RawIssuer {
                    $( $skey: self.$skey.clone(), )*
                    $( $pkey: self.$pkey.clone(), )*
                }
            }
        }

        impl RawIssuer {
            /// Reads an `[[issuers]]` table's settings through `get`.
            pub(super) fn read(mut get: impl FnMut(&'static Setting) -> Option<Value>) -> RawIssuer {
                RawIssuer {
                    $( $skey: get(&s::$skey).map(FromValue::from_value), )*
                    $( $pkey: get(&s::$pkey).map(FromValue::from_value), )*
                }
            }

            /// This table, with the policy settings it leaves unset taken
            /// from `top` (its name and key source are its own).
            pub fn inheriting(self, top: &RawIssuer) -> RawIssuer {
                RawIssuer {
                    $( $skey: self.$skey, )*
                    $( $pkey: self.$pkey.or_else(|| top.$pkey.clone()), )*
                }
            }

            /// The name and key-source settings given ([`Scope::IssuerSource`]).
            pub fn sources_given(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.$skey.is_some() { names.push(stringify!($skey)); } )*
                names
            }
        }
    };
}

// The list. Doc comments are the `--help` text (code marks dropped); keep
// them to what the setting is for and its bounds: the default is declared
// beside it and shown by `--help`.
settings! {
    issuer_source {
        /// Tokens must carry exactly this iss [default: not checked].
        issuer: Text { flag: "issuer", env: "JWTD_ISSUER", value: "S", topic: Tokens },
        /// Trusted JWK set or PEM public key file, re-read when it changes.
        /// One key source (this, --jwks-url, --discovery, `[[issuers]]` in the
        /// config file, or --dev) is required.
        jwks_file: Text { flag: "jwks-file", env: "JWTD_JWKS_FILE", value: "FILE", topic: Keys },
        /// Trusted JWK set URL, fetched in the background (https, or http to
        /// loopback).
        jwks_url: Text { flag: "jwks-url", env: "JWTD_JWKS_URL", value: "URL", topic: Keys },
        /// Issuer URL: its OIDC discovery document names the JWK set; tokens
        /// must carry this iss.
        discovery: Text { flag: "discovery", env: "JWTD_DISCOVERY", value: "ISSUER_URL", topic: Keys },
    }
    issuer_policy {
        /// Accepted audiences (repeatable or comma-separated); each is also
        /// a request selector [default: not checked].
        audiences: List { flag: "audience", env: "JWTD_AUDIENCES", value: "S", topic: Tokens },
        /// Allowed algorithms, comma-separated [default: all; none never].
        algorithms: List { flag: "algorithms", env: "JWTD_ALGORITHMS", value: "A,B", topic: Tokens },
        /// Clock skew allowed on exp, nbf and iat (whole seconds, at most
        /// 5m).
        leeway: Text { flag: "leeway", env: "JWTD_LEEWAY", value: "DURATION", topic: Tokens, default: "30s" },
        /// Claims a token must carry: exp and these, comma-separated; the
        /// item -exp accepts tokens without exp (e.g. --require=sub,-exp).
        required_claims: List { flag: "require", env: "JWTD_REQUIRE", value: "CLAIM,...", topic: Tokens, default: "exp" },
        /// Required header typ (e.g. at+jwt) [default: any].
        typ: Text { flag: "typ", env: "JWTD_TYP", value: "T", topic: Tokens },
        /// Longest token lifetime accepted, exp - iat (whole seconds)
        /// [default: not checked].
        max_lifetime: Text { flag: "max-lifetime", env: "JWTD_MAX_LIFETIME", value: "DURATION", topic: Tokens },
        /// Most keys a token without kid is tried against (0 to 1024);
        /// beyond, it is refused unknown_key without a signature check.
        max_kidless_keys: Text { flag: "max-kidless-keys", env: "JWTD_MAX_KIDLESS_KEYS", value: "N", topic: Tokens, default: "4" },
        /// DPoP (RFC 9449): off (refused), allowed (bearer and DPoP-bound
        /// tokens), required (DPoP-bound tokens only). A DPoP-bound token is
        /// never accepted as a bearer token.
        dpop: Text { flag: "dpop", env: "JWTD_DPOP", value: "off|allowed|required", topic: Tokens, default: "off" },
        /// Algorithms a DPoP proof may use, comma-separated (asymmetric
        /// only) [default: every asymmetric algorithm].
        dpop_algorithms: List { flag: "dpop-algorithms", env: "JWTD_DPOP_ALGORITHMS", value: "A,B", topic: Tokens },
        /// How old a DPoP proof's iat may be (leeway added; 1s to 10m).
        dpop_max_age: Text { flag: "dpop-max-age", env: "JWTD_DPOP_MAX_AGE", value: "DURATION", topic: Tokens, default: "60s" },
        /// JWE decryption keys: a JWK set or PEM file of private keys
        /// (keep it readable by jwtd alone); nested JWTs are decrypted,
        /// then verified [default: none, JWEs refused].
        jwe_keys: Text { flag: "jwe-keys", env: "JWTD_JWE_KEYS", value: "FILE", topic: Keys },
        /// Accept a JWE of claims alone (no inner signature) when its key
        /// management is symmetric (A*KW, dir): only a holder of the key
        /// can make one.
        jwe_unsigned_claims: Switch { flag: "jwe-unsigned-claims", env: "JWTD_JWE_UNSIGNED_CLAIMS", value: "BOOL", topic: Tokens, default: "false" },
    }
    daemon {
        /// Serve the embedded DEVELOPMENT key set (issuer `https://jwtd.dev.invalid`),
        /// whose private key is published in
        /// deploy/dev/: for trying jwtd out, never in production.
        dev: Switch { flag: "dev", env: "JWTD_DEV", value: "BOOL", topic: Keys, default: "false" },
        /// Refresh period of remote key sets without Cache-Control max-age.
        refresh_interval: Text { flag: "refresh-interval", env: "JWTD_REFRESH_INTERVAL", value: "DURATION", topic: Keys, default: "5m" },
        /// Lower bound on a remote key set's max-age; cap of the retry
        /// backoff.
        refresh_min: Text { flag: "refresh-min", env: "JWTD_REFRESH_MIN", value: "DURATION", topic: Keys, default: "1m" },
        /// Upper bound on a remote key set's max-age.
        refresh_max: Text { flag: "refresh-max", env: "JWTD_REFRESH_MAX", value: "DURATION", topic: Keys, default: "1d" },
        /// Deadline of one key set fetch, body included (at least 1s).
        fetch_timeout: Text { flag: "fetch-timeout", env: "JWTD_FETCH_TIMEOUT", value: "DURATION", topic: Keys, default: "5s" },
        /// Largest key set or discovery document accepted, in bytes.
        max_jwks_bytes: Text { flag: "max-jwks-bytes", env: "JWTD_MAX_JWKS_BYTES", value: "BYTES", topic: Keys, default: "262144" },
        /// Least time between refreshes caused by unknown kids, per issuer.
        unknown_kid_cooldown: Text { flag: "unknown-kid-cooldown", env: "JWTD_UNKNOWN_KID_COOLDOWN", value: "DURATION", topic: Keys, default: "30s" },
        /// How long a request with an unknown kid waits for that refresh
        /// (at most 60s).
        unknown_kid_wait: Text { flag: "unknown-kid-wait", env: "JWTD_UNKNOWN_KID_WAIT", value: "DURATION", topic: Keys, default: "1s" },
        /// Not ready once a remote key set has not been refreshed for this
        /// long; 0: never.
        max_stale: Text { flag: "max-stale", env: "JWTD_MAX_STALE", value: "DURATION", topic: Keys, default: "0" },
        /// Largest token accepted, in bytes.
        max_token_bytes: Text { flag: "max-token-bytes", env: "JWTD_MAX_TOKEN_BYTES", value: "BYTES", topic: Tokens, default: "16384" },
        /// Unix socket of the native protocol [default:
        /// $XDG_RUNTIME_DIR/jwtd.sock, else /tmp/jwtd.sock].
        socket: Text { flag: "socket", env: "JWTD_SOCKET", value: "PATH", topic: Listeners },
        /// Permissions of every Unix socket jwtd creates, octal.
        socket_mode: Text { flag: "socket-mode", env: "JWTD_SOCKET_MODE", value: "MODE", topic: Listeners, default: "0660" },
        /// Group (name or gid) of every Unix socket jwtd creates [default:
        /// the process's group].
        socket_group: Text { flag: "socket-group", env: "JWTD_SOCKET_GROUP", value: "GROUP", topic: Listeners },
        /// Serve the HTTP front (nginx auth_request, Envoy ext_authz HTTP
        /// mode) on this Unix socket [default: none].
        http_socket: Text { flag: "http-socket", env: "JWTD_HTTP_SOCKET", value: "PATH", topic: Listeners },
        /// Also serve the HTTP front on this TCP address, e.g.
        /// 127.0.0.1:8081 [default: none].
        http_listen: Text { flag: "http-listen", env: "JWTD_HTTP_LISTEN", value: "ADDR", topic: Listeners },
        /// Serve the gRPC front (Envoy ext_authz gRPC mode) on this Unix
        /// socket [default: none].
        grpc_socket: Text { flag: "grpc-socket", env: "JWTD_GRPC_SOCKET", value: "PATH", topic: Listeners },
        /// Also serve the gRPC front on this TCP address, e.g.
        /// 127.0.0.1:9191 [default: none].
        grpc_listen: Text { flag: "grpc-listen", env: "JWTD_GRPC_LISTEN", value: "ADDR", topic: Listeners },
        /// Header holding the token; for authorization the Bearer scheme is
        /// required.
        token_header: Text { flag: "token-header", env: "JWTD_TOKEN_HEADER", value: "NAME", topic: Fronts, default: "authorization" },
        /// Cookie holding the token when the header is absent [default:
        /// none].
        token_cookie: Text { flag: "token-cookie", env: "JWTD_TOKEN_COOKIE", value: "NAME", topic: Fronts },
        /// Query parameter holding the token (tokens in URLs get logged;
        /// off unless named) [default: none].
        token_query: Text { flag: "token-query", env: "JWTD_TOKEN_QUERY", value: "NAME", topic: Fronts },
        /// Claim headers added to allowed requests, HEADER=CLAIM,
        /// repeatable or comma-separated; replaces the defaults.
        claim_headers: Pairs { flag: "claim-header", env: "JWTD_CLAIM_HEADERS", value: "HEADER=CLAIM", topic: Fronts, default: "x-jwt-sub=sub,x-jwt-iss=iss,x-jwt-aud=aud,x-jwt-scope=scope" },
        /// Add the base64url payload as x-jwt-payload (true|false).
        forward_payload: Text { flag: "forward-payload", env: "JWTD_FORWARD_PAYLOAD", value: "BOOL", topic: Fronts, default: "false" },
        /// Add the reject reason as x-jwt-reason, for debugging
        /// (true|false; never in production).
        debug_reason: Text { flag: "debug-reason", env: "JWTD_DEBUG_REASON", value: "BOOL", topic: Fronts, default: "false" },
        /// Have the proxy remove the token header before the request goes
        /// upstream (true|false).
        strip_token: Text { flag: "strip-token", env: "JWTD_STRIP_TOKEN", value: "BOOL", topic: Fronts, default: "false" },
        /// HTTP front: prefix stripped from request paths before route
        /// matching (Envoy's path_prefix) [default: none].
        http_path_prefix: Text { flag: "http-path-prefix", env: "JWTD_HTTP_PATH_PREFIX", value: "PREFIX", topic: Fronts },
        /// The scheme and host clients address (e.g. `https://api.example.com`),
        /// for checking a DPoP proof's htu when the proxy cannot say
        /// [default: what the proxy reports].
        public_origin: Text { flag: "public-origin", env: "JWTD_PUBLIC_ORIGIN", value: "URL", topic: Fronts },
        /// HTTP front: the header a trusted proxy puts the client
        /// certificate in, for certificate-bound tokens: client-cert (RFC
        /// 9440), x-forwarded-client-cert (Envoy, its Hash=) or
        /// x-ssl-client-cert (nginx's $ssl_client_escaped_cert) [default:
        /// none, no header is trusted].
        client_cert_header: Text { flag: "client-cert-header", env: "JWTD_CLIENT_CERT_HEADER", value: "NAME", topic: Fronts },
        /// Send an allowed DPoP request upstream as Authorization: Bearer,
        /// without its DPoP header, for apps that know only bearer tokens
        /// (true|false).
        dpop_to_bearer: Text { flag: "dpop-to-bearer", env: "JWTD_DPOP_TO_BEARER", value: "BOOL", topic: Fronts, default: "false" },
        /// Concurrent connections per front; more wait in the kernel
        /// backlog.
        max_connections: Text { flag: "max-connections", env: "JWTD_MAX_CONNECTIONS", value: "N", topic: Limits, default: "1024" },
        /// Unanswered requests per native connection.
        max_in_flight: Text { flag: "max-in-flight", env: "JWTD_MAX_IN_FLIGHT", value: "N", topic: Limits, default: "1024" },
        /// Largest native protocol frame, in bytes.
        max_frame_bytes: Text { flag: "max-frame-bytes", env: "JWTD_MAX_FRAME_BYTES", value: "BYTES", topic: Limits, default: "65536" },
        /// Cache misses queued or in verification, all connections; beyond
        /// it requests are answered overloaded.
        max_verifying: Text { flag: "max-verifying", env: "JWTD_MAX_VERIFYING", value: "N", topic: Limits, default: "4096" },
        /// Close connections idle this long (at least 1s).
        idle_timeout: Text { flag: "idle-timeout", env: "JWTD_IDLE_TIMEOUT", value: "DURATION", topic: Limits, default: "5m" },
        /// Disconnect a client that reads no reply for this long.
        write_timeout: Text { flag: "write-timeout", env: "JWTD_WRITE_TIMEOUT", value: "DURATION", topic: Limits, default: "30s" },
        /// gRPC front: largest CheckRequest message, in bytes.
        grpc_max_message_bytes: Text { flag: "grpc-max-message-bytes", env: "JWTD_GRPC_MAX_MESSAGE_BYTES", value: "BYTES", topic: Limits, default: "65536" },
        /// gRPC front: concurrent streams per connection.
        grpc_max_streams: Text { flag: "grpc-max-streams", env: "JWTD_GRPC_MAX_STREAMS", value: "N", topic: Limits, default: "100" },
        /// gRPC front: request bytes held at once over all connections.
        grpc_max_buffered_bytes: Text { flag: "grpc-max-buffered-bytes", env: "JWTD_GRPC_MAX_BUFFERED_BYTES", value: "BYTES", topic: Limits, default: "16777216" },
        /// gRPC front: refuse a request message not complete after this
        /// long.
        grpc_body_timeout: Text { flag: "grpc-body-timeout", env: "JWTD_GRPC_BODY_TIMEOUT", value: "DURATION", topic: Limits, default: "10s" },
        /// HTTP front: largest request head, in bytes; 431 beyond.
        max_header_bytes: Text { flag: "max-header-bytes", env: "JWTD_MAX_HEADER_BYTES", value: "BYTES", topic: Limits, default: "32768" },
        /// HTTP front: close a connection whose request head is not
        /// complete this long after its first byte.
        header_timeout: Text { flag: "header-timeout", env: "JWTD_HEADER_TIMEOUT", value: "DURATION", topic: Limits, default: "10s" },
        /// DPoP proofs remembered against replay, each for dpop-max-age +
        /// leeway (size: DPoP requests/s x 90); one client key may hold
        /// half; beyond, requests are answered overloaded.
        dpop_replay_entries: Text { flag: "dpop-replay-entries", env: "JWTD_DPOP_REPLAY_ENTRIES", value: "N", topic: Limits, default: "100000" },
        /// Verified-result cache capacity in entries; 0 disables it.
        cache_entries: Text { flag: "cache-entries", env: "JWTD_CACHE_ENTRIES", value: "N", topic: Cache, default: "100000" },
        /// Longest a result stays cached (whole seconds; never past the
        /// token's exp).
        cache_max_ttl: Text { flag: "cache-max-ttl", env: "JWTD_CACHE_MAX_TTL", value: "DURATION", topic: Cache, default: "10m" },
        /// Revocation store: a redis:// URL, or several cluster nodes
        /// (repeatable or comma-separated) [default: in-memory].
        redis: List { flag: "redis", env: "JWTD_REDIS", value: "URL", topic: Revocation },
        /// When the revocation store cannot be asked: closed (could not
        /// decide) or open (not revoked).
        revocation_fail: Text { flag: "revocation-fail", env: "JWTD_REVOCATION_FAIL", value: "closed|open", topic: Revocation, default: "closed" },
        /// Revocation key prefix (no braces).
        revocation_prefix: Text { flag: "revocation-prefix", env: "JWTD_REVOCATION_PREFIX", value: "PREFIX", topic: Revocation, default: "jwtd:" },
        /// How long a revocation batch waits for more lookups (at most
        /// 10ms).
        revocation_window: Text { flag: "revocation-window", env: "JWTD_REVOCATION_WINDOW", value: "DURATION", topic: Revocation, default: "250us" },
        /// Most tokens per revocation batch.
        revocation_batch: Text { flag: "revocation-batch", env: "JWTD_REVOCATION_BATCH", value: "N", topic: Revocation, default: "256" },
        /// Deadline of one revocation batch (1ms to 10s).
        revocation_timeout: Text { flag: "revocation-timeout", env: "JWTD_REVOCATION_TIMEOUT", value: "DURATION", topic: Revocation, default: "100ms" },
        /// How long a "not revoked" answer is reused (at most 1h).
        revocation_cache_ttl: Text { flag: "revocation-cache-ttl", env: "JWTD_REVOCATION_CACHE_TTL", value: "DURATION", topic: Revocation, default: "1s" },
        /// /readyz fails while the revocation store (Redis) cannot be
        /// reached (true|false).
        ready_requires_revocation: Text { flag: "ready-requires-revocation", env: "JWTD_READY_REQUIRES_REVOCATION", value: "BOOL", topic: Revocation, default: "false" },
        /// Serve /metrics, /livez and /readyz on this TCP address, e.g.
        /// 0.0.0.0:9090; also turns metrics on [default: none].
        admin_addr: Text { flag: "admin-addr", env: "JWTD_ADMIN_ADDR", value: "ADDR", topic: Admin },
        /// Admin listener: connections at once; beyond, closed at once.
        admin_max_connections: Text { flag: "admin-max-connections", env: "JWTD_ADMIN_MAX_CONNECTIONS", value: "N", topic: Admin, default: "64" },
        /// Log filter, e.g. info or jwtd=debug.
        log: Text { flag: "log", env: "JWTD_LOG", value: "FILTER", topic: Admin, default: "info" },
        /// Log line format: text or json.
        log_format: Text { flag: "log-format", env: "JWTD_LOG_FORMAT", value: "FORMAT", topic: Admin, default: "text" },
        /// Worker threads; 0: one per core.
        threads: Text { flag: "threads", env: "JWTD_THREADS", value: "N", topic: Process, default: "0" },
        /// Time SIGTERM gives in-flight work (SIGINT: at most 1s).
        shutdown_grace: Text { flag: "shutdown-grace", env: "JWTD_SHUTDOWN_GRACE", value: "DURATION", topic: Process, default: "10s" },
    }
}
