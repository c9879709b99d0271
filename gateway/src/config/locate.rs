//! Maps key paths (`routes[3].upstream`) to `line:column` in the YAML source, so that errors
//! found after deserialization (which loses positions) can still point at the right place.
//! It walks the event stream of a second, span-aware parser; a path it cannot find is reported
//! without a location rather than with a wrong one.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Positions of every key and sequence item of a YAML document.
pub(crate) struct Locator {
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    /// A mapping: `key` is the pending key once read, awaiting its value.
    Map { path: String, key: Option<String> },
    /// A sequence and the index of the next item.
    Seq { path: String, next: usize },
}

impl Locator {
    /// Indexes `text`; a document that does not parse yields an empty index.
    pub(crate) fn new(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            // The path of the node this event starts, if it is a value (not a mapping key).
            let value_path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    positions.entry(p.clone()).or_insert(pos);
                    Some(p)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => Some(join(path, &k)),
                    None => {
                        // This event is a key. Only scalar keys are addressable.
                        if let Event::Scalar(k, ..) = &event {
                            let k = k.to_string();
                            positions.entry(join(path, &k)).or_insert(pos);
                            *key = Some(k);
                        } else {
                            *key = Some(String::from("?"));
                        }
                        None
                    }
                },
            };
            match event {
                Event::MappingStart(..) => {
                    stack.push(Frame::Map { path: value_path.unwrap_or_else(|| "?".into()), key: None })
                }
                Event::SequenceStart(..) => {
                    stack.push(Frame::Seq { path: value_path.unwrap_or_else(|| "?".into()), next: 0 })
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Self { positions }
    }

    /// The 1-based `(line, column)` of the key or item at `path`, or of its nearest located
    /// ancestor.
    pub(crate) fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
            if p.is_empty() {
                return None;
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}
