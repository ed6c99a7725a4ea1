//! Mutual TLS for webhooks (rustls, ring): the sender's client configuration
//! (trusts only the receiver's CA, presents Larmor's certificate) and a
//! receiver, a small HTTPS server that refuses clients without a certificate
//! from its CA. The receiver serves `larmor channel receive`, the tests and
//! the benches: it stores each POSTed envelope with its idempotency key.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// ring, not aws-lc-rs (which needs cmake and builds far longer on 2 cores).
/// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
/// exchange; the payloads are HPKE-sealed end to end in any case.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let c: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if c.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(c)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no PEM private key in it ({e})", path.display()))
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut r = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        r.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(r)
}

/// A client that trusts only `ca` and authenticates with `cert`/`key`.
pub fn client_config(ca: &Path, cert: &Path, key_file: &Path) -> Result<rustls::ClientConfig, String> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| format!("{}: {e}", cert.display()))
}

/// A server presenting `cert`/`key` that requires a client certificate signed by `client_ca`.
pub fn server_config(cert: &Path, key_file: &Path, client_ca: &Path) -> Result<rustls::ServerConfig, String> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider())
        .build()
        .map_err(|e| format!("{}: {e}", client_ca.display()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| format!("{}: {e}", cert.display()))
}

/// One POST a receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub idem_key: String,
    pub body: String,
}

/// What a receiver does with a POST: store it, and answer with a status.
pub type Handler = dyn Fn(&Received) -> u16 + Send + Sync;

/// An HTTPS receiver with mutual TLS on a loopback (or any) address.
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Handshakes refused (no or wrong client certificate).
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `addr`; every accepted POST is kept in `received` and passed to `handler`.
    pub fn start(addr: &str, tls: rustls::ServerConfig, handler: Arc<Handler>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let tls = Arc::new(tls);
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, refused, stop) = (received.clone(), refused.clone(), stop.clone());
            std::thread::Builder::new()
                .name("webhook-receiver".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(sock) = conn else { continue };
                        let (tls, received, refused, handler) =
                            (tls.clone(), received.clone(), refused.clone(), handler.clone());
                        let _ = std::thread::Builder::new().name("webhook-conn".into()).spawn(move || {
                            if let Err(e) = serve(sock, tls, &received, &*handler) {
                                tracing::debug!(error = %e, "webhook receiver: connection refused or failed");
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                })?
        };
        Ok(Receiver {
            addr,
            received,
            refused,
            stop,
            thread: Some(thread),
        })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    sock: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    received: &Mutex<Vec<Received>>,
    handler: &Handler,
) -> Result<(), String> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let conn = rustls::ServerConnection::new(tls).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    // Completes the handshake (and the client-certificate check) before reading.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("POST ") {
        return Err(format!("not a POST: {line:?}"));
    }
    let (mut len, mut idem_key) = (0usize, String::new());
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().map_err(|_| "bad content-length")?,
                "idempotency-key" => idem_key = v.trim().to_string(),
                _ => {}
            }
        }
    }
    if len > 16 << 20 {
        return Err("body too large".into());
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    drop(reader);
    let r = Received {
        idem_key,
        body: String::from_utf8(body).map_err(|_| "body is not UTF-8")?,
    };
    let status = handler(&r);
    if (200..300).contains(&status) {
        received.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
    let reply = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        if status < 300 { "OK" } else { "Error" }
    );
    stream.write_all(reply.as_bytes()).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
    Ok(())
}
