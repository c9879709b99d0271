//! `server.tls.acme.state_dir`: what survives a restart — the account key, and the certificate
//! with its key. Files are written whole (a temporary file renamed over the old one), keys
//! readable by the owner only, so a crash never leaves half a key and a restart reuses what
//! was issued without a new order.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The files of a state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The directory, created owner-only if it does not exist (one that exists keeps its
    /// permissions: it may be shared, such as `.`; the keys in it are owner-only anyway).
    pub fn open(dir: &Path) -> Result<Self, String> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            restrict(dir, 0o700);
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// The account's private key (PKCS#8 DER), if one was saved.
    pub fn account_key(&self) -> Result<Option<Vec<u8>>, String> {
        read_optional(&self.dir.join("account.key.der"))
    }

    /// Saves the account's private key.
    pub fn save_account_key(&self, pkcs8_der: &[u8]) -> Result<(), String> {
        write_atomically(&self.dir.join("account.key.der"), pkcs8_der, true)
    }

    /// The certificate chain and its key (PEM), if both were saved.
    pub fn certificate(&self) -> Result<Option<(String, String)>, String> {
        let chain = read_optional(&self.certificate_path())?;
        let key = read_optional(&self.key_path())?;
        Ok(match (chain, key) {
            (Some(c), Some(k)) => {
                Some((String::from_utf8_lossy(&c).into_owned(), String::from_utf8_lossy(&k).into_owned()))
            }
            _ => None,
        })
    }

    /// Saves a certificate chain and its key: the key first, so a certificate on disk always
    /// has its key beside it (a crash between the two leaves the old chain with a key that
    /// does not match it, refused at the next start, and a new order follows).
    pub fn save_certificate(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        write_atomically(&self.key_path(), key_pem.as_bytes(), true)?;
        write_atomically(&self.certificate_path(), chain_pem.as_bytes(), false)
    }

    /// Where the chain is kept (for messages and `/admin/certificates`).
    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join("certificate.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("certificate.key.pem")
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_atomically(path: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_files_come_back_and_keys_are_private() {
        let dir = std::env::temp_dir().join(format!("rustygate-acme-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Made here: owner-only. One that exists keeps its mode.
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            StateDir::open(&dir).unwrap();
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        }
        assert_eq!(state.account_key().unwrap(), None);
        assert_eq!(state.certificate().unwrap(), None);
        state.save_account_key(b"key").unwrap();
        state.save_certificate("CHAIN", "KEY").unwrap();
        assert_eq!(state.account_key().unwrap().as_deref(), Some(&b"key"[..]));
        assert_eq!(state.certificate().unwrap(), Some(("CHAIN".into(), "KEY".into())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in ["account.key.der", "certificate.key.pem"] {
                let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{name}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
