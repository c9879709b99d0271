//! Loading a configuration: read the file, parse YAML, expand `${VAR}` references, deserialize
//! into [`Config`] while collecting every unknown key and type error, then run the semantic
//! checks of [`super::validate`]. Every problem found is returned at once, each with the key path
//! and, where the YAML source allows, `line:column`.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::{
    issues::{ConfigError, ConfigIssue},
    locate::Locator,
    schema::Config,
    suggest::closest,
    validate,
};

/// The largest configuration file read (a bigger one, or an endless one such as `/dev/zero`,
/// is refused rather than read until memory runs out).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The deepest nesting of mappings and sequences accepted (a real configuration needs about 6).
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Reads and loads a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    use std::io::Read;
    let name = path.display().to_string();
    let fail = |message: String| ConfigError { source_name: name.clone(), issues: vec![ConfigIssue::at("", message)] };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(format!("the file is larger than {} MiB", MAX_CONFIG_BYTES >> 20)));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("the file is not UTF-8 text".into()))?;
    load_str(&text, &name)
}

/// The first place where `text` nests deeper than [`MAX_CONFIG_DEPTH`], if any. Checked on the
/// event stream before the document is built, so a hostile file costs linear time.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for item in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(item) => item,
            // The scanner's own nesting limit (about 256 flow levels) is the same refusal.
            Err(e) if e.info().contains("recursion limit") => {
                return Some((e.marker().line(), e.marker().col() + 1));
            }
            // Other syntax errors are reported by the YAML parser proper.
            Err(_) => return None,
        };
        match event {
            saphyr_parser::Event::MappingStart(..) | saphyr_parser::Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_CONFIG_DEPTH {
                    return Some((span.start.line(), span.start.col() + 1));
                }
            }
            saphyr_parser::Event::MappingEnd | saphyr_parser::Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Loads a configuration from YAML text; `source_name` names it in error messages.
pub fn load_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    load_with_env(text, source_name, &|name| std::env::var(name).ok())
}

/// [`load_str`] with an explicit environment lookup (tests use a fixed map).
pub fn load_with_env(
    text: &str,
    source_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |mut issues: Vec<ConfigIssue>| {
        let locator = Locator::new(text);
        for issue in &mut issues {
            if issue.line.is_none()
                && let Some((line, column)) = locator.find(&issue.path)
            {
                issue.line = Some(line);
                issue.column = Some(column);
            }
        }
        issues.sort_by_key(|i| (i.line.unwrap_or(usize::MAX), i.column.unwrap_or(0)));
        ConfigError { source_name: source_name.to_owned(), issues }
    };

    if let Some((line, column)) = too_deep(text) {
        let mut issue = ConfigIssue::at("", format!("the document nests deeper than {MAX_CONFIG_DEPTH} levels"));
        (issue.line, issue.column) = (Some(line), Some(column));
        return Err(ConfigError { source_name: source_name.to_owned(), issues: vec![issue] });
    }
    let mut doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Mapping::new()),
        Ok(v) => v,
        Err(e) => {
            let mut issue = ConfigIssue::at("", format!("invalid YAML: {}", strip_location(&e.to_string())));
            if let Some(loc) = e.location() {
                issue.line = Some(loc.line());
                issue.column = Some(loc.column());
            }
            return Err(fail(vec![issue]));
        }
    };
    if !doc.is_mapping() {
        return Err(fail(vec![ConfigIssue::at(
            "",
            "the configuration must be a mapping of keys (server:, routes:, …)",
        )]));
    }

    let mut issues = Vec::new();
    expand_env(&mut doc, &mut String::new(), env, &mut issues);
    let mut retyped = Vec::new();
    retype_scalars(&mut doc, &mut Vec::new(), &mut retyped);

    let (config, structural_only_unknown_keys) = deserialize_collecting(doc, retyped, &mut issues);
    let Some(mut config) = config else {
        return Err(fail(issues));
    };
    for route in &mut config.routes {
        route.derive_default_name();
    }
    for policy in config.auth.values_mut() {
        policy.read_key_digest();
    }
    // Semantic checks assume the structure is right; after a type error some keys were dropped
    // and the checks would report noise, so they run only when every structural issue was an
    // unknown key. Even then, a section with a misspelt key is left to that message alone
    // (`bakend:` would otherwise also read as "a route needs a backend").
    if issues.is_empty() || structural_only_unknown_keys {
        let typo_sections: Vec<String> =
            issues.iter().filter_map(|i| i.path.rsplit_once(['.', '[']).map(|(parent, _)| parent.to_owned())).collect();
        issues.extend(
            validate::validate(&config)
                .into_iter()
                .filter(|i| !typo_sections.iter().any(|s| i.path == *s || i.path.starts_with(&format!("{s}.")))),
        );
    }
    if issues.is_empty() { Ok(config) } else { Err(fail(issues)) }
}

/// Deserializes, removing each offending key and retrying, so that every unknown key and type
/// error is reported rather than only the first. Returns the config (if the structure could be
/// completed) and whether all issues found were unknown keys.
fn deserialize_collecting(
    mut doc: Value,
    mut retyped: Vec<(Vec<Seg>, String)>,
    issues: &mut Vec<ConfigIssue>,
) -> (Option<Config>, bool) {
    let mut only_unknown = true;
    // Bounded: each round removes one key or gives back one re-typed text, and a document has
    // finitely many of both.
    for _ in 0..256 + retyped.len() {
        match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            Ok(config) => return (Some(config), only_unknown),
            Err(err) => {
                let segments: Vec<Seg> = err.path().iter().map(Seg::from).collect();
                // A key that wants text got a scalar re-typed from its text: give the text back,
                // to that key in every item of the lists on its path at once (`routes[*].name`),
                // so a long list costs one more round, not one per item.
                let (back, kept): (Vec<_>, Vec<_>) =
                    retyped.into_iter().partition(|(path, _)| same_key_in_any_item(path, &segments));
                retyped = kept;
                if !back.is_empty() {
                    for (path, text) in back {
                        set_at(&mut doc, &path, Value::String(text));
                    }
                    continue;
                }
                let raw_message = err.inner().to_string();
                let message = match scalar_expected(&raw_message) {
                    Some(plain) => plain,
                    None => without_values(&raw_message),
                };
                let message = strip_location(&message);
                if let Some(unknown) = unknown_field(message) {
                    let suggestion = expected_names(message)
                        .and_then(|names| closest(unknown, &names))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    let mut path = segments.clone();
                    if !matches!(path.last(), Some(Seg::Key(k)) if k == unknown) {
                        path.push(Seg::Key(unknown.to_owned()));
                    }
                    issues.push(ConfigIssue::at(fmt_path(&path), format!("unknown key `{unknown}`{suggestion}")));
                    if !remove_at(&mut doc, &path) {
                        return (None, false);
                    }
                    continue;
                }
                only_unknown = false;
                let message = match unknown_variant(message) {
                    Some(variant) => {
                        let hint = expected_names(message)
                            .and_then(|names| closest(variant, &names))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        format!("{message}{hint}")
                    }
                    None => message.to_owned(),
                };
                issues.push(ConfigIssue::at(fmt_path(&segments), message));
                // A missing required key cannot be removed: stop here with what we have.
                if segments.is_empty() || !remove_at(&mut doc, &segments) {
                    return (None, false);
                }
            }
        }
    }
    (None, false)
}

/// serde's type errors quote the value (`invalid type: string "…", expected …`), which may be
/// an expanded `${SECRET}`: the quoted text is replaced by a description.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        // The quoted value ends at the first unescaped `"`.
        let mut end = None;
        let mut escaped = false;
        for (j, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(j);
                    break;
                }
                _ => escaped = false,
            }
        }
        match end {
            Some(j) => rest = &after[j + 1..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl From<&serde_path_to_error::Segment> for Seg {
    fn from(s: &serde_path_to_error::Segment) -> Self {
        use serde_path_to_error::Segment;
        match s {
            Segment::Seq { index } => Seg::Index(*index),
            Segment::Map { key } => Seg::Key(key.clone()),
            Segment::Enum { variant } => Seg::Key(variant.clone()),
            Segment::Unknown => Seg::Key("?".into()),
        }
    }
}

fn fmt_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes the node at `path`; false if it is not there.
/// Reads each string scalar as the YAML scalar it spells (`"3"` → 3, `"true"` → true, `"0.25"` →
/// 0.25), once, after `${VAR}` expansion: so a value from the environment (always text) or a
/// quoted number fills a numeric or boolean key without any lenient parsing of its own. Each
/// one re-typed is remembered; a key that wants text gets its text back
/// ([`deserialize_collecting`]). Plugin `config` values are the plugin's own JSON: left as
/// written.
fn retype_scalars(node: &mut Value, path: &mut Vec<Seg>, retyped: &mut Vec<(Vec<Seg>, String)>) {
    match node {
        Value::String(text) => {
            let typed = match serde_yaml_ng::from_str::<Value>(text) {
                Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
                _ => return,
            };
            let text = std::mem::replace(node, typed);
            if let Value::String(text) = text {
                retyped.push((path.clone(), text));
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                retype_scalars(item, path, retyped);
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                let Value::String(key) = key else { continue };
                let plugin_config = key == "config"
                    && matches!(path.as_slice(), [Seg::Key(p), Seg::Key(s), _] if p == "plugins" && s == "settings");
                if plugin_config {
                    continue;
                }
                path.push(Seg::Key(key.clone()));
                retype_scalars(value, path, retyped);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The message for text where a number or a boolean was expected, in the words the
/// configuration reference uses (`expected a non-negative whole number, found "many"`).
fn scalar_expected(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid type: string \"")?;
    let (text, expected) = rest.rsplit_once("\", expected ")?;
    let what = match expected.split_whitespace().next()? {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative whole number",
        "f32" | "f64" => "a number",
        "a" if expected.starts_with("a boolean") => "true or false",
        _ => return None,
    };
    Some(format!("expected {what}, found \"{text}\""))
}

/// Whether `path` is `key` or under it, list indices aside (`routes[7].name` is under
/// `routes[2].name` in this sense: the same key of another item).
fn same_key_in_any_item(path: &[Seg], key: &[Seg]) -> bool {
    path.len() >= key.len()
        && path.iter().zip(key).all(|pair| match pair {
            (Seg::Index(_), Seg::Index(_)) => true,
            (a, b) => a == b,
        })
}

/// Replaces the node at `path` (which exists).
fn set_at(doc: &mut Value, path: &[Seg], value: Value) {
    let mut node = doc;
    for seg in path {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    *node = value;
}

fn remove_at(doc: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = doc;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

/// serde_yaml appends " at line L column C" to messages; locations are reported separately.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    backticked_after(message, "unknown field `")
}

fn unknown_variant(message: &str) -> Option<&str> {
    backticked_after(message, "unknown variant `")
}

fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// The names listed after "expected" in serde's unknown-field/variant messages.
fn expected_names(message: &str) -> Option<Vec<&str>> {
    let idx = message.find("expected ")?;
    let names: Vec<&str> = message[idx..].split('`').skip(1).step_by(2).collect();
    (!names.is_empty()).then_some(names)
}

/// Expands `${VAR}` and `${VAR:-default}` in every string scalar; `$$` is a literal `$`.
fn expand_env(
    node: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) {
    match node {
        Value::String(s) if s.contains('$') => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => issues.push(ConfigIssue::at(path.clone(), message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, env, issues);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match key {
                    Value::String(k) => path.push_str(k),
                    other => path.push_str(&format!("{other:?}")),
                }
                expand_env(value, path, env, issues);
                path.truncate(len);
            }
        }
        // `!Tag value` would otherwise be read as the plain value: a typo'd or foreign tag
        // must not pass silently.
        Value::Tagged(tagged) => issues.push(ConfigIssue::at(
            path.clone(),
            format!("YAML tags such as `{}` are not supported; remove the tag", tagged.tag),
        )),
        _ => {}
    }
}

/// Expands one string. Errors name the variable so the user knows what to set.
pub(crate) fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            // Errors never echo the value: it may hold a secret.
            let end = after.find('}').ok_or_else(|| "unterminated `${` (no closing `}`)".to_owned())?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err("invalid variable name in a `${...}` reference (letters, digits and `_` only)".to_owned());
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use `${{{name}:-default}}` for a fallback)"
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
