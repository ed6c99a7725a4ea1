//! Helpers the bench binaries in `benches/` share: settings from the environment
//! and the process's own CPU time.

/// `name` from the environment, parsed; `default` when unset or not valid (said on stderr).
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not valid; using the default");
            default
        }),
        Err(_) => default,
    }
}

/// CPU time of this process so far (user + system, every thread), from
/// `/proc/self/stat`; 0 where unavailable.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime is field 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux architecture Rust targets.
    (ticks(11) + ticks(12)) / 100.0
}

/// A test PKI for mutual-TLS webhooks on loopback: a CA, a server certificate
/// for 127.0.0.1 and a client certificate, as PEM files in `dir`.
pub struct Pki {
    pub ca: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl Pki {
    pub fn generate(dir: &std::path::Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(sans)
                .expect("params")
                .signed_by(&key, &issuer)
                .expect("leaf");
            (cert.pem(), key.serialize_pem())
        };
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        let (sc, sk) = leaf(vec!["127.0.0.1".into()]);
        let (cc, ck) = leaf(vec!["larmor".into()]);
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", sc),
            server_key: write("server.key", sk),
            client_cert: write("client.pem", cc),
            client_key: write("client.key", ck),
        }
    }

    /// A webhook channel of `name` to `url`, sealed to `recipient_key`.
    pub fn channel(
        &self,
        name: &str,
        url: &str,
        recipient_key: &std::path::Path,
    ) -> larmor_alerts::config::ChannelConfig {
        larmor_alerts::config::ChannelConfig {
            name: name.into(),
            recipient_key: Some(recipient_key.into()),
            events: None,
            webhook: Some(larmor_alerts::transport::WebhookConfig {
                url: url.into(),
                ca_file: self.ca.clone(),
                cert_file: self.client_cert.clone(),
                key_file: self.client_key.clone(),
                timeout: std::time::Duration::from_secs(10),
            }),
            kafka: None,
        }
    }
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
