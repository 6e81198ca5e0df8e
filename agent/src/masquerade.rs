//! Masquerading of pod traffic that leaves the cluster CIDR, as an nftables table per
//! instance (replaced atomically). Traffic between pods and nodes is never rewritten.
use ipnet::Ipv4Net;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the {table} ruleset: {stderr}")]
    Rejected { table: String, stderr: String },
}

/// One nft transaction that (re)creates the table: declaring it first makes the delete
/// succeed on a first run, so the swap is atomic and idempotent.
pub fn render(
    table: &str,
    pod_cidr: Ipv4Net,
    cluster_cidr: Ipv4Net,
    overlay_device: &str,
) -> String {
    format!(
        "table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster_cidr} oifname != \"{overlay_device}\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

pub fn apply(table: &str, ruleset: &str) -> Result<(), MasqueradeError> {
    run_nft(table, ruleset)
}

pub fn remove(table: &str) -> Result<(), MasqueradeError> {
    run_nft(
        table,
        &format!("table ip {table} {{}}\ndelete table ip {table}\n"),
    )
}

fn run_nft(table: &str, input: &str) -> Result<(), MasqueradeError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(MasqueradeError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(MasqueradeError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(MasqueradeError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(MasqueradeError::Rejected {
            table: table.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_only_traffic_leaving_the_cluster() {
        let text = render(
            "kaya_n1",
            "10.244.1.0/24".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
            "kyvxn1",
        );
        assert!(text.starts_with("table ip kaya_n1 {}\ndelete table ip kaya_n1\n"));
        assert!(text.contains(
            "ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 oifname != \"kyvxn1\" masquerade"
        ));
    }
}
