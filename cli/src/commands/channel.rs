//! `larmor channel`: the receiver's side of a channel. `keygen` makes the
//! party's key pair (the public half goes to the hospital's Larmor);
//! `receive` is an HTTPS webhook receiver with mutual TLS that stores what it
//! is sent; `open` verifies and decrypts sealed notices.

use larmor_alerts::seal::{self, CloudEvent, RecipientSecret};
use larmor_alerts::tls;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum ChannelCommand {
    /// Make a recipient key pair: OUT.key (private, keep it) and OUT.pub (give it to the sender).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify and decrypt sealed notices (a CloudEvent JSON file, or JSON lines as
    /// the file outbox and `receive` write); prints one JSON payload per line.
    Open {
        file: PathBuf,
        /// The recipient's private key (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Larmor's signing public key. Default: larmor-data/keys/larmor-signing.pub.
        #[arg(long)]
        signer: Option<PathBuf>,
    },
    /// Receive notices over HTTPS with mutual TLS, appending each to OUT (JSON lines).
    Receive {
        /// Address to listen on, e.g. 127.0.0.1:8443.
        #[arg(long)]
        listen: String,
        /// This receiver's certificate and key (PEM).
        #[arg(long)]
        cert: PathBuf,
        #[arg(long = "cert-key")]
        cert_key: PathBuf,
        /// CA whose client certificates are accepted (the one that signed Larmor's).
        #[arg(long)]
        client_ca: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Stop after this long. Default: until Ctrl-C.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
}

pub async fn channel(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::Keygen { out } => {
            let (sk, pk) = RecipientSecret::generate();
            let key = out.with_extension("key");
            let pub_path = sk
                .save(&key)
                .map_err(|e| anyhow::anyhow!("cannot write {} (it is never overwritten): {e}", key.display()))?;
            println!("private key: {} (keep it)", key.display());
            println!("public key:  {} = {}", pub_path.display(), pk.to_hex());
        }
        ChannelCommand::Open { file, key, signer } => {
            let sk = RecipientSecret::load(&key)?;
            let signer =
                signer.unwrap_or_else(|| larmor_datadir::DataDir::default().signing_key().with_extension("pub"));
            let vk = seal::load_verifying_key(&signer)?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            // One event (however laid out), or JSON lines.
            let events: Vec<&str> = if serde_json::from_str::<CloudEvent>(&text).is_ok() {
                vec![text.trim()]
            } else {
                text.lines().filter(|l| !l.trim().is_empty()).collect()
            };
            let (mut ok, mut failed, mut repeats) = (0, 0, 0);
            // At least once: a notice sent again (same id, its idempotency key) is shown once.
            let mut seen = std::collections::HashSet::new();
            let mut stdout = std::io::stdout().lock();
            for (i, line) in events.iter().enumerate() {
                let opened = serde_json::from_str::<CloudEvent>(line)
                    .map_err(|e| seal::SealError::Envelope(e.to_string()))
                    .and_then(|ev| sk.open(&ev, &vk).map(|plain| (ev.id, plain)));
                match opened {
                    Ok((id, _)) if seen.contains(&id) => repeats += 1,
                    Ok((id, plain)) => {
                        seen.insert(id);
                        ok += 1;
                        stdout.write_all(&plain)?;
                        stdout.write_all(b"\n")?;
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: notice {}: {e}", file.display(), i + 1);
                    }
                }
            }
            if repeats > 0 {
                eprintln!("{repeats} repeated notice(s) (same idempotency key) shown once");
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} notices could not be opened ({ok} opened)", ok + failed);
            }
        }
        ChannelCommand::Receive {
            listen,
            cert,
            cert_key,
            client_ca,
            out,
            duration,
        } => {
            let config = tls::server_config(&cert, &cert_key, &client_ca).map_err(anyhow::Error::msg)?;
            let file = std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?,
            );
            // Keys of the notices stored, so a notice sent again is acknowledged, not stored twice.
            let seen = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
            let handler = Arc::new(move |r: &tls::Received| {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if !r.idem_key.is_empty() && seen.contains(&r.idem_key) {
                    return 200;
                }
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                // One line per notice; a write that fails is refused (the sender retries).
                match writeln!(f, "{}", r.body.replace('\n', " ")).and_then(|_| f.sync_data()) {
                    Ok(()) => {
                        seen.insert(r.idem_key.clone());
                        200
                    }
                    Err(_) => 503,
                }
            });
            let mut rx = tls::Receiver::start(&listen, config, handler)?;
            println!("receiving on https://{} → {}", rx.addr, out.display());
            super::common::until_stopped(duration).await;
            rx.stop();
            println!("{} notices received", rx.received().len());
        }
    }
    Ok(())
}
