//! The API server's credentials: a cluster CA and serving certificate made on first start,
//! bearer tokens (the admin's and one per node), and the admin kubeconfig users point
//! kubectl at. Everything lives in the data directory and is reused on restart.
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("token file {path}: {message}")]
    Tokens { path: PathBuf, message: String },
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Admin,
    /// An agent; it may see and change only what its node needs (as NodeRestriction).
    Node(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    admin: String,
    #[serde(default)]
    nodes: BTreeMap<String, String>,
}

/// The CA, the serving certificate and the token table of one control plane.
pub struct Pki {
    dir: PathBuf,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    tokens: TokenFile,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TOKENS: &str = "tokens.json";
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Secrets are written owner-only: the key and tokens grant full control of the cluster.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source| PkiError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error)?;
    io::Write::write_all(&mut file, contents.as_bytes()).map_err(io_error)?;
    fs::rename(&temporary, path).map_err(io_error)
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "kaya-ca");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

impl Pki {
    /// Loads the CA and tokens from `dir`, creating them on first start, and issues a serving
    /// certificate for `hosts` (names or IPs; localhost and the in-cluster names always).
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let (ca_pem, ca_key) = match (read(&dir.join(CA_CERT))?, read(&dir.join(CA_KEY))?) {
            (Some(cert), Some(key)) => (cert, KeyPair::from_pem(&key)?),
            _ => {
                let key = KeyPair::generate()?;
                let cert = ca_params().self_signed(&key)?;
                write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
                write_private(&dir.join(CA_CERT), &cert.pem())?;
                (cert.pem(), key)
            }
        };
        // The CA's subject and key are all an issuer needs; both are fixed once created.
        let issuer = Issuer::new(ca_params(), ca_key);
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "kubernetes", "kubernetes.default"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        names.extend(
            hosts
                .iter()
                .filter(|host| !names.contains(host))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kaya-apiserver");
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let server_key = KeyPair::generate()?;
        let server_cert = params.signed_by(&server_key, &issuer)?;

        let tokens_path = dir.join(TOKENS);
        let tokens = match read(&tokens_path)? {
            Some(text) => serde_json::from_str(&text).map_err(|error| PkiError::Tokens {
                path: tokens_path.clone(),
                message: error.to_string(),
            })?,
            None => {
                let tokens = TokenFile {
                    admin: random_token(),
                    nodes: BTreeMap::new(),
                };
                write_private(&tokens_path, &serialize_tokens(&tokens))?;
                tokens
            }
        };
        Ok(Pki {
            dir: dir.to_owned(),
            ca_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            tokens,
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.tokens.admin
    }

    /// Re-reads the token file (node tokens are issued by `kaya-control-plane node-token`
    /// while the server runs).
    pub fn reload_tokens(&mut self) -> Result<(), PkiError> {
        let path = self.dir.join(TOKENS);
        if let Some(text) = read(&path)? {
            self.tokens = serde_json::from_str(&text).map_err(|error| PkiError::Tokens {
                path,
                message: error.to_string(),
            })?;
        }
        Ok(())
    }

    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        if constant_time_eq(token, &self.tokens.admin) {
            return Some(Identity::Admin);
        }
        self.tokens
            .nodes
            .iter()
            .find(|(_, node_token)| constant_time_eq(token, node_token))
            .map(|(name, _)| Identity::Node(name.clone()))
    }

    /// Writes `admin.kubeconfig` for `server` (an https URL) and returns its path.
    pub fn write_admin_kubeconfig(&self, server: &str) -> Result<PathBuf, PkiError> {
        let path = self.dir.join(ADMIN_KUBECONFIG);
        write_private(&path, &kubeconfig(server, &self.ca_pem, &self.tokens.admin))?;
        Ok(path)
    }
}

/// Authenticates against a shared Pki, re-reading the token file once on a miss.
pub fn authenticate(pki: &std::sync::RwLock<Pki>, token: &str) -> Option<Identity> {
    if let Some(identity) = pki.read().ok()?.authenticate(token) {
        return Some(identity);
    }
    let mut pki = pki.write().ok()?;
    pki.reload_tokens().ok()?;
    pki.authenticate(token)
}

/// Issues (or returns) node `name`'s token in `dir`, for an operator or a test harness.
pub fn issue_node_token(dir: &Path, name: &str) -> Result<String, PkiError> {
    let path = dir.join(TOKENS);
    let mut tokens: TokenFile = match read(&path)? {
        Some(text) => serde_json::from_str(&text).map_err(|error| PkiError::Tokens {
            path: path.clone(),
            message: error.to_string(),
        })?,
        None => TokenFile {
            admin: random_token(),
            nodes: BTreeMap::new(),
        },
    };
    if let Some(token) = tokens.nodes.get(name) {
        return Ok(token.clone());
    }
    let token = random_token();
    tokens.nodes.insert(name.to_owned(), token.clone());
    write_private(&path, &serialize_tokens(&tokens))?;
    Ok(token)
}

fn serialize_tokens(tokens: &TokenFile) -> String {
    // Serialising a struct of strings cannot fail.
    serde_json::to_string_pretty(tokens).unwrap_or_default()
}

/// Compares in time independent of where the strings differ (tokens are secrets).
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |difference, (x, y)| difference | (x ^ y))
            == 0
}

pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kaya\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: kaya\n  context:\n    cluster: kaya\n    user: admin\ncurrent-context: kaya\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_a_restart_and_tokens_identify_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &["10.0.0.1".into()]).unwrap();
        let node_token = issue_node_token(dir.path(), "node-1").unwrap();
        let second = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.admin_token(), second.admin_token());
        assert_eq!(
            second.authenticate(second.admin_token()),
            Some(Identity::Admin)
        );
        assert_eq!(
            second.authenticate(&node_token),
            Some(Identity::Node("node-1".into()))
        );
        assert_eq!(second.authenticate("wrong"), None);
        let kubeconfig = second
            .write_admin_kubeconfig("https://127.0.0.1:6443")
            .unwrap();
        let text = fs::read_to_string(kubeconfig).unwrap();
        assert!(text.contains("server: https://127.0.0.1:6443"));
        assert!(text.contains(second.admin_token()));
    }
}
