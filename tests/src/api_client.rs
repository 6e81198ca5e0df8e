//! A plain HTTPS client of the Kubernetes API for benchmarks and raw-request tests: the
//! control plane's CA, the admin token, JSON bodies and watch streams read line by line.
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::control_plane::ControlPlaneProcess;

#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl ApiClient {
    pub fn new(control_plane: &ControlPlaneProcess) -> anyhow::Result<ApiClient> {
        let ca = control_plane.ca_pem()?;
        let certificate = Certificate::from_pem(ca.as_bytes()).context("the cluster CA")?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(vec![certificate])))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .new_agent();
        Ok(ApiClient {
            agent,
            base: format!(
                "https://localhost:{}",
                control_plane.address.rsplit(':').next().unwrap_or("6443")
            ),
            authorization: format!("Bearer {}", control_plane.admin_token()?),
        })
    }

    /// (status code, body) of a request with an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.authorization)
                .call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &self.authorization)
                .call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &self.authorization)
                .send_json(body),
            ("PUT", Some(body)) => self
                .agent
                .put(&url)
                .header("Authorization", &self.authorization)
                .send_json(body),
            _ => anyhow::bail!("unsupported request {method} {path}"),
        }
        .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Starts a watch and hands each event to `each` until it returns false or the stream ends.
    pub fn watch(&self, path: &str, mut each: impl FnMut(Value) -> bool) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization)
            .call()?;
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let event: Value = serde_json::from_str(&line?)?;
            if !each(event) {
                break;
            }
        }
        Ok(())
    }
}
