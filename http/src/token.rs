//! The admin token: configured (`auth.admin_token`, `FLOWBOT_ADMIN_TOKEN`), or generated on first
//! start into `<data_dir>/admin_token` (mode 0600) and read from there on later starts.
//!
//! Invariants: the token itself is kept only as its SHA-256 digest; a presented token is compared
//! with it in constant time (digests of equal length, so neither content nor length leaks through
//! timing).

use crate::ServeError;
use flowbot_app::AppConfig;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The name of the generated token file in the data folder.
pub const TOKEN_FILE: &str = "admin_token";

/// The bearer token of the admin API.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token that `secret` matches.
    pub fn new(secret: &str) -> Self {
        Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The configuration or `FLOWBOT_ADMIN_TOKEN`.
    Configured,
    /// The token file written on an earlier start.
    Stored(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

/// The admin token of `config`: the configured one, else the one in the data folder, else a new
/// random one written there with mode 0600.
pub fn resolve_admin_token(config: &AppConfig) -> Result<(AdminToken, TokenSource), ServeError> {
    if let Some(token) = config.auth.admin_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok((AdminToken::new(token), TokenSource::Configured));
    }
    let path = config.data_dir.join(TOKEN_FILE);
    let file_error = |source| ServeError::TokenFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(file_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the file is empty (delete it to have a new token generated)",
                )));
            }
            Ok((AdminToken::new(token), TokenSource::Stored(path)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.data_dir).map_err(file_error)?;
            let token = random_token();
            write_private(&path, &token).map_err(file_error)?;
            Ok((AdminToken::new(&token), TokenSource::Generated(path)))
        }
        Err(error) => Err(file_error(error)),
    }
}

/// 32 random bytes from the operating system, as hex.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` (it must not exist) readable and writable by its owner only.
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = AdminToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
    }

    #[test]
    fn a_token_is_generated_once_with_owner_only_permissions() {
        let data = tempfile::tempdir().unwrap();
        let config = AppConfig {
            data_dir: data.path().join("nested"),
            ..AppConfig::default()
        };
        let (first, source) = resolve_admin_token(&config).unwrap();
        let path = config.data_dir.join(TOKEN_FILE);
        assert_eq!(source, TokenSource::Generated(path.clone()));
        let secret = std::fs::read_to_string(&path).unwrap();
        assert_eq!(secret.trim().len(), 64);
        assert!(first.matches(secret.trim()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = resolve_admin_token(&config).unwrap();
        assert_eq!(source, TokenSource::Stored(path));
        assert!(again.matches(secret.trim()));
    }

    #[test]
    fn a_configured_token_wins_and_writes_nothing() {
        let data = tempfile::tempdir().unwrap();
        let mut config = AppConfig {
            data_dir: data.path().to_path_buf(),
            ..AppConfig::default()
        };
        config.auth.admin_token = Some("configured".into());
        let (token, source) = resolve_admin_token(&config).unwrap();
        assert_eq!(source, TokenSource::Configured);
        assert!(token.matches("configured"));
        assert!(!data.path().join(TOKEN_FILE).exists());
    }
}
