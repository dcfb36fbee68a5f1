//! The node's secp256k1 identity on disk: a file holding the secret key as 64 hex characters,
//! created (readable by the owner only) on first start, as geth's and reth's `nodekey`. The file
//! is written whole or not at all (a temporary file, synced, then renamed into place and the
//! directory synced): a crash or a full disk during the first start must not leave an empty or
//! cut key that every later start refuses.

use std::{
    fs::File,
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
        Self::load_or_create_with(path, |file, text| file.write_all(text))
    }

    /// [`Self::load_or_create`], writing a new key's text with `write` (tests make it fail).
    fn load_or_create_with(
        path: &Path,
        write: impl FnOnce(&mut File, &[u8]) -> std::io::Result<()>,
    ) -> Result<Self, NodeKeyError> {
        let io = |source| NodeKeyError::Io { path: path.to_path_buf(), source };
        let invalid = |reason: String| NodeKeyError::Invalid { path: path.to_path_buf(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Err(invalid(
                "the node key file is empty; remove it to start with a new identity (or put the \
                 old key back)"
                    .into(),
            )),
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
                let text = hex::encode(secret.secret_bytes());
                write_whole(path, |file| write(file, text.as_bytes())).map_err(io)?;
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

/// Writes `path` whole or not at all: `write` fills `path` + ".tmp" (created owner-only on Unix,
/// emptied if a crash left one), which is synced and renamed over `path`, then the directory is
/// synced so that the rename survives a power loss. On an error the temporary file is removed.
fn write_whole(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut file| {
        write(&mut file)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use super::*;

    /// A directory of this test process named after `name`, and the path of a node key in it
    /// (no file there yet).
    fn key_path(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("leafsync-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodekey");
        let _ = std::fs::remove_file(&path);
        (dir, path)
    }

    #[test]
    fn a_created_key_loads_again_and_bad_files_are_refused() {
        let (dir, path) = key_path("nodekey");
        let first = NodeKey::load_or_create(&path).unwrap();
        assert!(first.created());
        let again = NodeKey::load_or_create(&path).unwrap();
        assert!(!again.created());
        assert_eq!(first.secret(), again.secret());
        // Each bad file's text, and the words its error must contain.
        for (text, words) in [
            ("zz", &["nodekey", "hex"][..]),
            ("0101", &["32 bytes"]),
            ("\n", &["empty", "remove it"]),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = NodeKey::load_or_create(&path).unwrap_err().to_string();
            assert!(words.iter().all(|word| e.contains(word)), "{text:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A write that fails part way (a full disk) leaves no key file behind, so the next start
    /// creates one; before, it left a cut file that every later start refused.
    #[test]
    fn a_failed_write_leaves_no_key_file_and_the_next_start_creates_one() {
        let (dir, path) = key_path("nodekey-cut");
        let cut = NodeKey::load_or_create_with(&path, |file, text| {
            file.write_all(&text[..10])?;
            Err(std::io::Error::other("no space left on device"))
        });
        assert!(cut.unwrap_err().to_string().contains("no space left"));
        assert!(!path.exists(), "a cut key file was left behind");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the temporary file is removed");
        let key = NodeKey::load_or_create(&path).unwrap();
        assert!(key.created());
        assert_eq!(NodeKey::load_or_create(&path).unwrap().secret(), key.secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
