//! Sealed notices: each payload is encrypted to its recipient's X25519 public
//! key with HPKE (RFC 9180 base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) and the result signed with Larmor's Ed25519 key, in a
//! CloudEvents 1.0 JSON envelope. A transport sees only the envelope: an opaque
//! id, a generic type, the time and ciphertext. The receiver checks the
//! signature (origin, integrity) before decrypting (confidentiality).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, Verifier};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The envelope's `type`: the same for every notice (the real type is inside).
pub const SEALED_TYPE: &str = "org.larmor.notice.sealed.v1";
/// The `larmorenc` extension: the HPKE suite.
pub const SUITE: &str = "hpke-base-x25519-hkdfsha256-chacha20poly1305";
/// HPKE `info`: binds the ciphertext to this protocol.
const INFO: &[u8] = b"larmor notice v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("not a CloudEvent from larmor: {0}")]
    Envelope(String),
    #[error("signature check failed: the notice was altered, or not signed by this larmor key")]
    BadSignature,
    #[error("cannot decrypt: the notice is not sealed to this key (or was altered)")]
    Decrypt,
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// A CloudEvents 1.0 envelope (JSON format) carrying a sealed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// The idempotency key: the same logical notice always has the same id.
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub time: String,
    pub datacontenttype: String,
    /// The HPKE suite ([`SUITE`]).
    pub larmorenc: String,
    /// HPKE encapsulated key, base64.
    pub larmorenckey: String,
    /// Which recipient key it is sealed to (first 8 bytes of the public key, hex).
    pub larmorrecipient: String,
    /// Ed25519 signature over everything above and the ciphertext, base64.
    pub larmorsig: String,
    /// Ciphertext (payload and tag), base64.
    pub data_base64: String,
}

impl CloudEvent {
    /// What the signature covers: every attribute but the signature, length-prefixed.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"larmor-cloudevent-v1".to_vec();
        for part in [
            &self.specversion,
            &self.id,
            &self.source,
            &self.ty,
            &self.time,
            &self.datacontenttype,
            &self.larmorenc,
            &self.larmorenckey,
            &self.larmorrecipient,
            &self.data_base64,
        ] {
            out.extend((part.len() as u64).to_be_bytes());
            out.extend(part.as_bytes());
        }
        out
    }

    /// HPKE associated data: the id and time, so a ciphertext cannot be replayed under another id.
    fn aad(id: &str, time: &str) -> Vec<u8> {
        format!("{id}\n{time}").into_bytes()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelopes serialize")
    }
}

/// Larmor's signing key.
pub struct NoticeSigner {
    key: ed25519_dalek::SigningKey,
    source: String,
}

impl NoticeSigner {
    /// Loads the key at `path` (hex secret), creating it (and `<path>.pub`) when missing.
    pub fn load_or_create(path: &Path, source: &str) -> Result<NoticeSigner, SealError> {
        let key_err = |reason: String| SealError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let key = if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| key_err("not a hex Ed25519 secret key (64 hex digits)".into()))?;
            ed25519_dalek::SigningKey::from_bytes(&bytes)
        } else {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| key_err(e.to_string()))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&secret);
            write_key_pair(path, &secret, key.verifying_key().as_bytes()).map_err(|e| key_err(e.to_string()))?;
            tracing::info!(path = %path.display(), "created larmor's signing key; receivers verify with its .pub");
            key
        };
        Ok(NoticeSigner {
            key,
            source: source.to_string(),
        })
    }

    pub fn from_secret(secret: [u8; 32], source: &str) -> NoticeSigner {
        NoticeSigner {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
            source: source.to_string(),
        }
    }

    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// Seals `payload` to `recipient` as the CloudEvent `id`.
    pub fn seal(
        &self,
        id: &str,
        time_ms: i64,
        payload: &[u8],
        recipient: &RecipientKey,
    ) -> Result<CloudEvent, SealError> {
        let time = chrono::DateTime::from_timestamp_millis(time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &recipient.0,
            INFO,
            payload,
            &CloudEvent::aad(id, &time),
            &mut rand_core::UnwrapErr(rand_core::OsRng),
        )
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut ev = CloudEvent {
            specversion: "1.0".into(),
            id: id.to_string(),
            source: self.source.clone(),
            ty: SEALED_TYPE.into(),
            time,
            datacontenttype: "application/json".into(),
            larmorenc: SUITE.into(),
            larmorenckey: B64.encode(enc.to_bytes()),
            larmorrecipient: recipient.id(),
            larmorsig: String::new(),
            data_base64: B64.encode(ct),
        };
        ev.larmorsig = B64.encode(self.key.sign(&ev.signed_bytes()).to_bytes());
        Ok(ev)
    }
}

/// A recipient's public key (X25519).
#[derive(Clone)]
pub struct RecipientKey(<X25519HkdfSha256 as Kem>::PublicKey);

impl RecipientKey {
    pub fn from_hex(text: &str) -> Option<RecipientKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&bytes)
            .ok()
            .map(RecipientKey)
    }

    pub fn load(path: &Path) -> Result<RecipientKey, SealError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealError::Key {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        RecipientKey::from_hex(&text).ok_or_else(|| SealError::Key {
            path: path.to_path_buf(),
            reason: "not a recipient public key (64 hex digits, from `larmor channel keygen`)".into(),
        })
    }

    /// Short id of the key, carried in envelopes so a receiver sees which key to use.
    pub fn id(&self) -> String {
        hex::encode(&self.0.to_bytes()[..8])
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

/// A recipient's private key: opens what was sealed to its public key.
pub struct RecipientSecret(<X25519HkdfSha256 as Kem>::PrivateKey);

impl RecipientSecret {
    /// A new random key pair.
    pub fn generate() -> (RecipientSecret, RecipientKey) {
        let (sk, pk) = X25519HkdfSha256::gen_keypair(&mut rand_core::UnwrapErr(rand_core::OsRng));
        (RecipientSecret(sk), RecipientKey(pk))
    }

    pub fn load(path: &Path) -> Result<RecipientSecret, SealError> {
        let err = |reason: String| SealError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let bytes = hex::decode(text.trim()).map_err(|_| err("not hex".into()))?;
        <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&bytes)
            .map(RecipientSecret)
            .map_err(|_| err("not a recipient private key (64 hex digits, from `larmor channel keygen`)".into()))
    }

    pub fn public(&self) -> RecipientKey {
        RecipientKey(X25519HkdfSha256::sk_to_pk(&self.0))
    }

    /// Writes `<stem>.key` (private, mode 0600) and `<stem>.pub`.
    pub fn save(&self, key_path: &Path) -> std::io::Result<PathBuf> {
        write_key_pair(key_path, &self.0.to_bytes(), &self.public().0.to_bytes())
    }

    /// Verifies the envelope's signature with `signer`, then decrypts it.
    pub fn open(&self, ev: &CloudEvent, signer: &ed25519_dalek::VerifyingKey) -> Result<Vec<u8>, SealError> {
        verify(ev, signer)?;
        let enc_bytes = B64
            .decode(&ev.larmorenckey)
            .map_err(|_| SealError::Envelope("larmorenckey is not base64".into()))?;
        let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&enc_bytes)
            .map_err(|_| SealError::Envelope("larmorenckey is not an X25519 key".into()))?;
        let ct = B64
            .decode(&ev.data_base64)
            .map_err(|_| SealError::Envelope("data_base64 is not base64".into()))?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.0,
            &enc,
            INFO,
            &ct,
            &CloudEvent::aad(&ev.id, &ev.time),
        )
        .map_err(|_| SealError::Decrypt)
    }
}

/// Checks an envelope's form and its signature.
pub fn verify(ev: &CloudEvent, signer: &ed25519_dalek::VerifyingKey) -> Result<(), SealError> {
    if ev.specversion != "1.0" || ev.larmorenc != SUITE {
        return Err(SealError::Envelope(format!(
            "specversion {:?}, larmorenc {:?}",
            ev.specversion, ev.larmorenc
        )));
    }
    let sig: [u8; 64] = B64
        .decode(&ev.larmorsig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SealError::BadSignature)?;
    signer
        .verify(&ev.signed_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| SealError::BadSignature)
}

/// Loads a verifying key written as hex (`larmor-signing.pub`).
pub fn load_verifying_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, SealError> {
    let err = |reason: String| SealError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err("not a hex Ed25519 public key (64 hex digits)".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| err(e.to_string()))
}

/// Writes a secret (mode 0600) and its public half beside it (`.pub`).
fn write_key_pair(key_path: &Path, secret: &[u8], public: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path)?;
    f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())?;
    f.sync_all()?;
    let pub_path = key_path.with_extension("pub");
    std::fs::write(&pub_path, format!("{}\n", hex::encode(public)))?;
    Ok(pub_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_and_any_change_is_refused() {
        let signer = NoticeSigner::from_secret([7; 32], "urn:larmor:test");
        let (alice, alice_pk) = RecipientSecret::generate();
        let (bob, _) = RecipientSecret::generate();
        let ev = signer.seal("id-1", 1_700_000_000_000, b"{\"x\":1}", &alice_pk).unwrap();
        let vk = signer.verifying_key();
        assert_eq!(alice.open(&ev, &vk).unwrap(), b"{\"x\":1}");
        assert!(matches!(bob.open(&ev, &vk), Err(SealError::Decrypt)));
        assert!(!ev.to_json().contains("\"x\""), "the payload is not in clear");

        let mut t = ev.clone();
        t.id = "id-2".into();
        assert!(matches!(alice.open(&t, &vk), Err(SealError::BadSignature)));
        let mut t = ev.clone();
        let mut ct = B64.decode(&t.data_base64).unwrap();
        ct[0] ^= 1;
        t.data_base64 = B64.encode(ct);
        assert!(matches!(alice.open(&t, &vk), Err(SealError::BadSignature)));
        let other = NoticeSigner::from_secret([8; 32], "urn:larmor:test");
        assert!(matches!(
            alice.open(&ev, &other.verifying_key()),
            Err(SealError::BadSignature)
        ));
    }

    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = RecipientSecret::generate();
        let pub_path = sk.save(&dir.path().join("aurora.key")).unwrap();
        assert_eq!(RecipientKey::load(&pub_path).unwrap().to_hex(), pk.to_hex());
        let back = RecipientSecret::load(&dir.path().join("aurora.key")).unwrap();
        assert_eq!(back.public().to_hex(), pk.to_hex());
        assert!(
            sk.save(&dir.path().join("aurora.key")).is_err(),
            "never overwrites a key"
        );
        let s1 = NoticeSigner::load_or_create(&dir.path().join("s.key"), "x").unwrap();
        let s2 = NoticeSigner::load_or_create(&dir.path().join("s.key"), "x").unwrap();
        assert_eq!(s1.verifying_key(), s2.verifying_key());
        assert_eq!(
            load_verifying_key(&dir.path().join("s.pub")).unwrap(),
            s1.verifying_key()
        );
    }
}
