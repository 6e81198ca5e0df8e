//! kaya-cni binary: reads the CNI environment and stdin, runs the command, prints the result
//! or the spec's error object.
use kaya_cni::commands::{self, SocketAgent, requested_version};
use kaya_cni::config::{Env, NetConf};
use kaya_cni::link::Netlink;
use kaya_cni::spec::{CniError, code};
use std::io::{Read, Write};
use std::time::Duration;

/// Bounds every agent call: a hung agent becomes "try again later", never a hung runtime.
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

fn execute(stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let env = Env::from_vars(|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CniError::new(code::IO_FAILURE, format!("starting runtime: {err}")))?;
    runtime.block_on(async {
        let socket = match env.command {
            kaya_cni::config::Command::Version => Default::default(),
            _ => NetConf::parse(stdin)?.agent_socket,
        };
        let agent = SocketAgent {
            socket,
            timeout: AGENT_TIMEOUT,
        };
        let plumbing = Netlink::connect()?;
        commands::run(&env, stdin, &plumbing, &agent).await
    })
}

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => execute(&stdin),
        Err(err) => Err(CniError::new(
            code::IO_FAILURE,
            format!("reading stdin: {err}"),
        )),
    };
    let mut stdout = std::io::stdout();
    match outcome {
        Ok(Some(result)) => {
            let _ = writeln!(stdout, "{result}");
        }
        Ok(None) => {}
        Err(err) => {
            let _ = writeln!(stdout, "{}", err.to_json(&requested_version(&stdin)));
            std::process::exit(1);
        }
    }
}
