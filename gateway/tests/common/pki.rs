//! Throwaway certificate authorities for the TLS tests, made by the `openssl` command line in a
//! temporary directory (ECDSA P-256): no key is committed.

use std::{path::PathBuf, process::Command};

/// A throwaway CA and the leaves it signs, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let pki = Self { dir: tempfile::tempdir().unwrap() };
        pki.new_key("req -x509 -keyout ca.key -out ca.pem -days 2", "/CN=rustygate test CA");
        pki
    }

    /// `openssl ARGS` (space-separated, no spaces inside one) with a new ECDSA P-256 key and
    /// the subject `subject`.
    pub fn new_key(&self, args: &str, subject: &str) -> String {
        let mut all: Vec<&str> = args.split(' ').collect();
        all.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject]);
        self.openssl(&all)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn openssl(&self, args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).current_dir(self.dir.path()).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `NAME.pem` and `NAME.key`: a server leaf for `dns_names` (its CN is NAME), signed by the
    /// test CA, valid for `days` (negative: already expired).
    pub fn leaf(&self, name: &str, dns_names: &[&str], days: i32) -> (PathBuf, PathBuf) {
        let san = dns_names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
        self.signed("ca", name, &format!("subjectAltName={san}\n"), days)
    }

    /// A CA of its own, `NAME.pem` / `NAME.key` (e.g. the one client certificates chain to).
    pub fn another_ca(&self, name: &str) -> PathBuf {
        self.new_key(&format!("req -x509 -keyout {name}.key -out {name}.pem -days 2"), &format!("/CN={name}"));
        self.path(&format!("{name}.pem"))
    }

    /// A client certificate `NAME.pem` / `NAME.key` (CN=NAME, the given SANs such as
    /// `URI:spiffe://test/ops`), signed by the CA `ca` (`ca.pem`/`ca.key` in the directory).
    pub fn client(&self, ca: &str, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let mut ext = String::from("extendedKeyUsage=clientAuth\n");
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        self.signed(ca, name, &ext, 2)
    }

    pub fn signed(&self, ca: &str, name: &str, ext_lines: &str, days: i32) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(self.path(&ext), ext_lines).unwrap();
        self.new_key(&format!("req -keyout {key} -out {csr}"), &format!("/CN={name}"));
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let days = days.to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            &days,
            "-extfile",
            &ext,
        ]);
        (self.path(&pem), self.path(&key))
    }
}
