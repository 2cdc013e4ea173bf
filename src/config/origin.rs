//! Where each setting's value came from, so that a problem names what the
//! user has to change: the flag, the variable, or the file and line.

use std::collections::HashMap;

use super::settings::{RawConfig, Setting};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag(String),
    /// An environment variable.
    Env(String),
    /// A line of the config file (`None` where the parser gave no position).
    File(String, Option<usize>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => f.write_str(var),
            Origin::File(path, Some(line)) => write!(f, "{path}:{line}"),
            Origin::File(path, None) => f.write_str(path),
        }
    }
}

/// The origin of every setting that was given, keyed by the name problems
/// start with (`leeway`, `issuers[0].leeway`, `routes[1].prefix`).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    given: HashMap<String, Origin>,
    /// The config file's name, for problems of the file as a whole.
    file: Option<String>,
}

impl Origins {
    /// Records where each setting given in `flags`, `env` and the file
    /// (`file`: its path, text and parsed settings) came from; the highest
    /// precedence source wins, as in [`RawConfig::or`].
    pub fn new(
        flags: &RawConfig,
        env: &RawConfig,
        file: Option<(&str, &str, &RawConfig)>,
    ) -> Origins {
        let mut given = HashMap::new();
        if let Some((path, text, raw)) = file {
            let lines = toml_lines(text);
            for name in raw.given() {
                given.insert(
                    name.to_owned(),
                    Origin::File(path.to_owned(), lines.get(name).copied()),
                );
            }
            // Keys inside tables (`issuers[0].leeway`), by their line.
            for (key, line) in lines {
                given
                    .entry(key)
                    .or_insert_with(|| Origin::File(path.to_owned(), Some(line)));
            }
        }
        // Flags and variables give only settings of the list (never
        // `issuers` or `routes`).
        let setting = |name: &str| Setting::named(name).expect("a given setting is in the list");
        for name in env.given() {
            given.insert(name.to_owned(), Origin::Env(setting(name).env.to_owned()));
        }
        for name in flags.given() {
            given.insert(name.to_owned(), Origin::Flag(setting(name).flag()));
        }
        Origins {
            given,
            file: file.map(|(path, _, _)| path.to_owned()),
        }
    }

    /// Where the setting `name` came from, if it was given.
    pub fn of(&self, name: &str) -> Option<&Origin> {
        self.given.get(name)
    }

    /// `problem` prefixed with the origin of the setting it starts with
    /// (`JWTD_LEEWAY: leeway: ...`, `jwtd.toml:3: leeway: ...`); problems of
    /// the file itself (`config file: ...`) name the file and, where known,
    /// the line. Problems about no single given setting are returned as
    /// they are.
    pub fn locate(&self, problem: &str) -> String {
        if let Some(rest) = problem.strip_prefix("config file: ") {
            let file = self.file.as_deref().unwrap_or("config file");
            let key = rest.split(": ").next().unwrap_or_default();
            return match self.given.get(key) {
                Some(Origin::File(_, Some(line))) => format!("{file}:{line}: {rest}"),
                _ => format!("{file}: {rest}"),
            };
        }
        let Some((key, _)) = problem.split_once(": ") else {
            return problem.to_owned();
        };
        // A table's setting that the table leaves unset was inherited from
        // the top level: that is where to change it.
        let inherited = key
            .split_once("].")
            .map(|(_, setting)| setting)
            .unwrap_or(key);
        match self.given.get(key).or_else(|| self.given.get(inherited)) {
            Some(origin) => format!("{origin}: {problem}"),
            None => problem.to_owned(),
        }
    }
}

/// The line of every key of a TOML document, by the name problems use:
/// `leeway`, `issuers[0]` (the table's header), `issuers[0].leeway`,
/// `routes[1].claims.role`, `claim_headers.x-user`. Empty when the text
/// does not parse (the parse error carries its own position).
fn toml_lines(text: &str) -> HashMap<String, usize> {
    use toml::de::{DeTable, DeValue};
    fn line(text: &str, offset: usize) -> usize {
        text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
    fn walk(text: &str, prefix: &str, table: &DeTable<'_>, out: &mut HashMap<String, usize>) {
        for (key, value) in table {
            let name = format!("{prefix}{}", key.get_ref());
            out.insert(name.clone(), line(text, key.span().start));
            match value.get_ref() {
                DeValue::Table(inner) => walk(text, &format!("{name}."), inner, out),
                DeValue::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        if let DeValue::Table(inner) = item.get_ref() {
                            let at = format!("{name}[{n}]");
                            out.insert(at.clone(), line(text, item.span().start));
                            walk(text, &format!("{at}."), inner, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = HashMap::new();
    if let Ok(doc) = DeTable::parse(text) {
        walk(text, "", doc.get_ref(), &mut out);
    }
    out
}
