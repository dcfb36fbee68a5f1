//! The node's secp256k1 identity on disk: a file holding the secret key as 64 hex characters,
//! created (readable by the owner only) on first start, as geth's and reth's `nodekey`.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use secp256k1::SecretKey;

/// Why a node key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// The file could not be read, created or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something that is not a secp256k1 secret key in hex.
    #[error("{path}: {reason}")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The node's identity key, as loaded from or written to its file.
#[derive(Debug, Clone, Copy)]
pub struct NodeKey {
    secret: SecretKey,
    /// Whether this run created the file.
    created: bool,
}

impl NodeKey {
    /// Loads the key at `path`, or creates a fresh one there (mode 0600 on Unix) when the file
    /// does not exist. An existing file that is not 32 bytes of hex is an error, never replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, NodeKeyError> {
        let io = |source| NodeKeyError::Io { path: path.to_path_buf(), source };
        let invalid = |reason: String| NodeKeyError::Invalid { path: path.to_path_buf(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|e| invalid(format!("not a hex node key: {e}")))?;
                let bytes: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| invalid("a node key is 32 bytes".into()))?;
                let secret =
                    SecretKey::from_byte_array(bytes).map_err(|e| invalid(e.to_string()))?;
                Ok(Self { secret, created: false })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = SecretKey::new(&mut rand::rng());
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut file = opts.open(path).map_err(io)?;
                file.write_all(hex::encode(secret.secret_bytes()).as_bytes()).map_err(io)?;
                Ok(Self { secret, created: true })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The secret key.
    pub const fn secret(&self) -> SecretKey {
        self.secret
    }

    /// Whether [`NodeKey::load_or_create`] wrote a new file.
    pub const fn created(&self) -> bool {
        self.created
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use super::*;

    #[test]
    fn a_created_key_loads_again_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("leafsync-nodekey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodekey");
        let _ = std::fs::remove_file(&path);
        let first = NodeKey::load_or_create(&path).unwrap();
        assert!(first.created());
        let again = NodeKey::load_or_create(&path).unwrap();
        assert!(!again.created());
        assert_eq!(first.secret(), again.secret());
        std::fs::write(&path, "zz").unwrap();
        let e = NodeKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("nodekey") && e.contains("hex"), "{e}");
        std::fs::write(&path, "0101").unwrap();
        let e = NodeKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("32 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
