//! The HTTPS listener's certificates as a reloadable set: loaded at start, loaded again when
//! their files' bytes change (a reload, or the watcher seeing a file replaced), swapped in
//! whole only when every pair loads; otherwise the set being served stays.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{
    certs::{LoadedCertificate, PairError, parse_pair, read_pair, unix_now},
    sni::SniResolver,
};

/// The certificates being served, and the file bytes they were loaded from.
#[derive(Debug)]
pub struct ServedCertificates {
    resolver: Arc<SniResolver>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// (cert path, key path, cert bytes, key bytes) of each pair, in order.
    sources: Vec<(PathBuf, PathBuf, Vec<u8>, Vec<u8>)>,
    certificates: Vec<LoadedCertificate>,
}

/// Why a set could not be loaded: the index of the pair, and what was wrong with it.
pub type SetError = (usize, PairError);

fn load_all(pairs: &[(PathBuf, PathBuf)], acme: bool) -> Result<Loaded, SetError> {
    let now = unix_now();
    let mut loaded = Loaded { sources: Vec::with_capacity(pairs.len()), certificates: Vec::with_capacity(pairs.len()) };
    for (i, (cert, key)) in pairs.iter().enumerate() {
        let (cert_text, key_text) = read_pair(cert, key).map_err(|e| (i, e))?;
        let parsed = parse_pair(cert, &cert_text, key, &key_text, now).map_err(|e| (i, e))?;
        loaded.certificates.push(parsed);
        loaded.sources.push((cert.clone(), key.clone(), cert_text, key_text));
    }
    if loaded.certificates.is_empty() && !acme {
        return Err((0, PairError::Cert("no certificate configured".into())));
    }
    Ok(loaded)
}

impl ServedCertificates {
    /// Loads every pair (certificate file, key file); the first is the default. With `acme`,
    /// its certificate is served for its domains (and as the default when no pair is given).
    pub fn load(
        pairs: &[(PathBuf, PathBuf)],
        acme: Option<Arc<dyn super::sni::ManagedCertificates>>,
    ) -> Result<Self, SetError> {
        let loaded = load_all(pairs, acme.is_some())?;
        let resolver = SniResolver::new(&loaded.certificates, acme)
            .ok_or_else(|| (0, PairError::Cert("no certificate configured".into())))?;
        Ok(Self { resolver: Arc::new(resolver), state: Mutex::new(loaded) })
    }

    /// What rustls asks for a certificate.
    pub fn resolver(&self) -> Arc<SniResolver> {
        self.resolver.clone()
    }

    /// The certificates served now.
    pub fn certificates(&self) -> Vec<LoadedCertificate> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).certificates.clone()
    }

    /// The certificates served now with the files each was loaded from, in order (the first
    /// is the default).
    pub fn with_sources(&self) -> Vec<(LoadedCertificate, PathBuf, PathBuf)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .certificates
            .iter()
            .zip(&state.sources)
            .map(|(c, (cf, kf, _, _))| (c.clone(), cf.clone(), kf.clone()))
            .collect()
    }

    /// Serves `pairs` from the next handshake on if they differ from what is served (other
    /// files, or new bytes in the same ones). `Ok(true)`: a new set is served; `Ok(false)`:
    /// nothing changed; `Err`: a pair failed to load and the served set stays.
    pub fn refresh(&self, pairs: &[(PathBuf, PathBuf)]) -> Result<bool, SetError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = state.sources.len() == pairs.len()
            && state
                .sources
                .iter()
                .zip(pairs)
                .all(|((c, k, ct, kt), (pc, pk))| c == pc && k == pk && same_bytes(pc, ct) && same_bytes(pk, kt));
        if unchanged {
            return Ok(false);
        }
        let loaded = load_all(pairs, true)?;
        if !self.resolver.replace(&loaded.certificates) {
            return Err((0, PairError::Cert("no certificate configured".into())));
        }
        *state = loaded;
        Ok(true)
    }
}

/// Whether `path` still holds `bytes` (an unreadable file counts as changed: the load that
/// follows says why).
fn same_bytes(path: &Path, bytes: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|now| now == bytes)
}
