//! Content digests (`sha256:<hex>`): parsing, and verifying bytes as they stream past.
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?}: expected sha256:<64 lower-case hex digits>")]
    Malformed(String),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    Mismatch { expected: Digest, actual: Digest },
}

/// A sha256 content digest; the only algorithm registries use for images in practice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::Malformed(text.to_string()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(text.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The hex part, used as a file name in the content store.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn verify(&self, bytes: &[u8]) -> Result<(), DigestError> {
        let actual = Digest::of(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.clone(),
                actual,
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Copies a stream into `sink` while hashing it, so a blob is verified without reading it twice.
pub fn copy_hashed(source: &mut impl Read, sink: &mut impl Write) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        sink.write_all(&buffer[..read])?;
        total += read as u64;
    }
    Ok((
        Digest {
            hex: hex::encode(hasher.finalize()),
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        let digest = Digest::of(b"hello");
        assert_eq!(
            digest.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&digest.to_string()).unwrap(), digest);
        assert!(digest.verify(b"hello").is_ok());
        assert!(matches!(
            digest.verify(b"hellO"),
            Err(DigestError::Mismatch { .. })
        ));
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "sha256:abc",
            "md5:2cf2",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "",
        ] {
            assert!(
                matches!(Digest::parse(text), Err(DigestError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn hashes_while_copying() {
        let mut sink = Vec::new();
        let (digest, size) = copy_hashed(&mut &b"hello"[..], &mut sink).unwrap();
        assert_eq!(
            (digest, size, sink.as_slice()),
            (Digest::of(b"hello"), 5, &b"hello"[..])
        );
    }
}
