//! `jwtd ping`: is the daemon up and ready? For scripts and Kubernetes exec
//! probes; it asks over the native socket (PING, `docs/protocol.md`).

use std::process::ExitCode;

use serde_json::json;

use jwtd::client::Client;
use jwtd::protocol::Reply;

/// Exit status when the daemon answers but is not ready.
const EXIT_NOT_READY: u8 = 3;
/// Exit status when the daemon cannot be reached.
const EXIT_UNREACHABLE: u8 = 1;

/// Flags of `jwtd ping`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/jwtd.sock or /tmp/jwtd.sock].
    #[arg(long, value_name = "PATH", env = "JWTD_SOCKET")]
    socket: Option<String>,
    /// Give up after this long [default: 2s].
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = jwtd::config::parse_duration)]
    timeout: std::time::Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = args.socket.unwrap_or_else(jwtd::config::default_socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(async {
        tokio::time::timeout(args.timeout, async {
            Client::connect(&socket).await?.ping().await
        })
        .await
    });
    let (out, code) = match reply {
        Ok(Ok(Reply::Pong { ready: true, .. })) => (json!({"ready": true}), 0),
        Ok(Ok(Reply::Pong { ready: false, .. })) => (json!({"ready": false}), EXIT_NOT_READY),
        Ok(Ok(other)) => {
            eprintln!("jwtd ping: unexpected reply {other:?}");
            (json!({"ready": false}), EXIT_NOT_READY)
        }
        Ok(Err(e)) => {
            eprintln!("jwtd ping: {socket}: {e}");
            (
                json!({"ready": false, "error": "unreachable"}),
                EXIT_UNREACHABLE,
            )
        }
        Err(_) => {
            eprintln!("jwtd ping: {socket}: no answer within {:?}", args.timeout);
            (
                json!({"ready": false, "error": "timeout"}),
                EXIT_UNREACHABLE,
            )
        }
    };
    println!("{out}");
    Ok(ExitCode::from(code))
}
