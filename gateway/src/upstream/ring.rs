//! A consistent-hash ring for `ip_hash` / `header_hash`: each backend owns `VNODES × weight`
//! points on a 64-bit circle, and a key goes to the owner of the first point at or after the
//! key's hash. Removing a backend moves only the keys it owned (about 1/N of them); a backend
//! out of rotation is skipped by walking on to the next point, so its keys spread over the
//! others and come back when it does. Hashes are deterministic (not seeded per process), so
//! every gateway replica of one build maps a key to the same backend.

use std::{hash::Hasher, net::IpAddr};

/// Points per unit of weight: enough for an even spread (±10%) over a handful of backends.
const VNODES: u32 = 160;

/// The ring: `(point, backend index)` sorted by point.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

fn hash(bytes: &[u8]) -> u64 {
    // std's `SipHasher` is SipHash-2-4 with zero keys: stable within a build, and well mixed.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    h.write(bytes);
    h.finish()
}

/// The bytes an IP address is hashed as (its 4 or 16 octets), without allocating.
pub fn key_of_ip(ip: IpAddr) -> IpKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            IpKey { bytes, len: 4 }
        }
        IpAddr::V6(v6) => IpKey { bytes: v6.octets(), len: 16 },
    }
}

/// An address's hash key (see [`key_of_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct IpKey {
    bytes: [u8; 16],
    len: usize,
}

impl AsRef<[u8]> for IpKey {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Ring {
    /// Builds the ring of backends given as `(label, weight)`, in index order.
    pub fn new<'a>(backends: impl Iterator<Item = (&'a str, u32)>) -> Self {
        let mut points = Vec::new();
        for (index, (label, weight)) in backends.enumerate() {
            for v in 0..VNODES * weight {
                points.push((hash(format!("{label}#{v}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The backend index for `key`: the first point at or after its hash whose backend passes
    /// `usable`, or `None` if none does.
    pub fn lookup(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        let n = self.points.len();
        (0..n).map(|i| self.points[(start + i) % n].1).find(|&b| usable(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Ring {
        let labels: Vec<String> = (0..n).map(|i| format!("http://b{i}:80")).collect();
        Ring::new(labels.iter().map(|l| (l.as_str(), 1)))
    }

    #[test]
    fn removing_one_of_four_backends_moves_only_its_keys() {
        let r = ring(4);
        let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        let before: Vec<usize> = keys.iter().map(|k| r.lookup(k.as_bytes(), |_| true).unwrap()).collect();
        let mut shares = [0usize; 4];
        for b in &before {
            shares[*b] += 1;
        }
        assert!(shares.iter().all(|s| (150..=350).contains(s)), "uneven spread {shares:?}");
        // Backend 2 leaves: exactly its keys move, each to another backend.
        let after: Vec<usize> = keys.iter().map(|k| r.lookup(k.as_bytes(), |b| b != 2).unwrap()).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(moved, shares[2]);
        assert!(moved <= 350, "{moved} of 1000 keys moved");
        assert!(before.iter().zip(&after).all(|(a, b)| *a == 2 || a == b));
    }

    #[test]
    fn no_usable_backend_means_no_pick() {
        assert_eq!(ring(3).lookup(b"k", |_| false), None);
        assert_eq!(Ring::default().lookup(b"k", |_| true), None);
    }
}
