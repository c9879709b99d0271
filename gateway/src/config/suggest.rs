//! "Did you mean": the known name closest to a misspelt one.

/// The valid name closest to a misspelt one, if it is close enough to be a plausible typo.
pub fn closest<'a>(wrong: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(&wrong.to_lowercase(), n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}
