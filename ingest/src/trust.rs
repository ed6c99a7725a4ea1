//! Device trust: every frame is signed by its device (Ed25519 over the exact
//! payload bytes, carried in the `larmor-sig` header), and is accepted only from
//! an enrolled, unrevoked device, with a fresh sequence number and a plausible clock.

use crate::channels::Stream;
use crate::registry::Device;
use crate::wire::{Frame, Reject, RejectReason};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// Kafka header holding the hex Ed25519 signature of the payload.
pub const HEADER_SIGNATURE: &str = "larmor-sig";

/// A device's private signing key.
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> std::io::Result<DeviceKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(DeviceKey(SigningKey::from_bytes(&seed)))
    }

    /// A deterministic key for a simulated machine. Never use for a real device:
    /// anyone who knows the seed knows the key.
    pub fn simulated(seed: u64, machine_id: &str) -> DeviceKey {
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in machine_id.bytes() {
            state = (state ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            // SplitMix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        DeviceKey(SigningKey::from_bytes(&bytes))
    }

    pub fn from_hex(text: &str) -> Result<DeviceKey, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not a hex key: {e}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an Ed25519 private key is 32 bytes".to_string())?;
        Ok(DeviceKey(SigningKey::from_bytes(&arr)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The public key, as stored in the device registry.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// Hex signature of `payload`, for the `larmor-sig` header.
    pub fn sign(&self, payload: &[u8]) -> String {
        hex::encode(self.0.sign(payload).to_bytes())
    }
}

/// Trust settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Refuse frames without a valid signature. Turn off only for a lab without keys.
    pub require_signatures: bool,
    /// How far in the future a frame's timestamps may be, against this host's clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// How old a frame may be when it arrives (gateways buffer during outages).
    #[serde(with = "humantime_serde")]
    pub max_lateness: Duration,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            require_signatures: true,
            max_clock_skew: Duration::from_secs(300),
            max_lateness: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The checks that need no memory of earlier frames: enrolment (revoked), the
/// Ed25519 signature over the exact payload bytes, and the clock. Each
/// verification thread holds its own (it caches parsed device keys).
#[derive(Clone)]
pub struct FrameVerifier {
    config: TrustConfig,
    keys: HashMap<String, Option<VerifyingKey>>,
}

/// Keys and the last accepted sequence number per (machine, stream).
pub struct TrustState {
    verifier: FrameVerifier,
    last_seq: HashMap<(String, Stream), u64>,
}

fn parse_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

impl FrameVerifier {
    pub fn new(config: TrustConfig) -> Self {
        FrameVerifier {
            config,
            keys: HashMap::new(),
        }
    }

    /// Refuses a frame from a revoked device, with a missing or wrong signature, or
    /// with timestamps too far ahead of or behind `now_ms`. Replays are
    /// [`TrustState::admit`]'s business.
    pub fn verify(
        &mut self,
        frame: &Frame,
        device: &Device,
        payload: &[u8],
        signature: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), Reject> {
        if device.revoked {
            return Err(Reject::new(
                RejectReason::RevokedDevice,
                format!("machine {} is revoked", device.machine_id),
            ));
        }
        if self.config.require_signatures {
            let key = match self.keys.get(&device.machine_id) {
                Some(k) => k,
                None => self
                    .keys
                    .entry(device.machine_id.clone())
                    .or_insert_with(|| device.public_key.as_deref().and_then(parse_key)),
            };
            let Some(key) = key else {
                return Err(Reject::new(
                    RejectReason::BadSignature,
                    format!(
                        "machine {} has no valid public key in the registry; re-enrol it",
                        device.machine_id
                    ),
                ));
            };
            let sig = signature
                .and_then(|s| {
                    let mut b = [0u8; 64];
                    hex::decode_to_slice(s, &mut b).ok().map(|()| b)
                })
                .map(|b| Signature::from_bytes(&b))
                .ok_or_else(|| Reject::new(RejectReason::BadSignature, "missing or malformed larmor-sig header"))?;
            key.verify_strict(payload, &sig)
                .map_err(|_| Reject::new(RejectReason::BadSignature, "signature does not match the device's key"))?;
        }
        let skew = self.config.max_clock_skew.as_millis() as i64;
        let late = self.config.max_lateness.as_millis() as i64;
        let (oldest, newest) = frame.samples.iter().fold((frame.ts_ms, frame.ts_ms), |(lo, hi), s| {
            (lo.min(s.ts_ms), hi.max(s.ts_ms))
        });
        if newest > now_ms + skew {
            return Err(Reject::new(
                RejectReason::ClockSkew,
                format!(
                    "timestamp {newest} is {} ms ahead of this host's clock",
                    newest - now_ms
                ),
            ));
        }
        if oldest < now_ms - late {
            return Err(Reject::new(
                RejectReason::ClockSkew,
                format!("timestamp {oldest} is older than the allowed lateness"),
            ));
        }
        Ok(())
    }

    /// Forgets cached keys, after the registry changed.
    pub fn reload_keys(&mut self) {
        self.keys.clear();
    }
}

impl TrustState {
    pub fn new(config: TrustConfig) -> Self {
        TrustState {
            verifier: FrameVerifier::new(config),
            last_seq: HashMap::new(),
        }
    }

    /// A verifier with the same settings, for a verification thread.
    pub fn verifier(&self) -> FrameVerifier {
        FrameVerifier::new(self.verifier.config.clone())
    }

    /// Checks a decoded frame; on success its sequence number becomes the latest.
    pub fn check(
        &mut self,
        frame: &Frame,
        device: &Device,
        payload: &[u8],
        signature: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), Reject> {
        self.verifier.verify(frame, device, payload, signature, now_ms)?;
        self.admit(frame)
    }

    /// The mutable verifier, for [`crate::verify::examine`] on the consumer thread.
    pub fn verifier_mut(&mut self) -> &mut FrameVerifier {
        &mut self.verifier
    }

    /// The replay check for a frame [`FrameVerifier::verify`] accepted, in arrival
    /// order: its sequence number must be after the last accepted one of its
    /// machine and stream, and then becomes the latest.
    pub fn admit(&mut self, frame: &Frame) -> Result<(), Reject> {
        let key = (frame.machine_id.clone(), frame.stream);
        if let Some(&last) = self.last_seq.get(&key)
            && frame.seq <= last
        {
            return Err(Reject::new(
                RejectReason::Replay,
                format!(
                    "sequence {} is not after {last} for {} {}",
                    frame.seq, frame.machine_id, frame.stream
                ),
            ));
        }
        self.last_seq.insert(key, frame.seq);
        Ok(())
    }

    /// Latest accepted sequence numbers, for the checkpoint manifest.
    pub fn sequences(&self) -> &HashMap<(String, Stream), u64> {
        &self.last_seq
    }

    /// Restores sequence numbers from durable state (keeps the higher of each).
    pub fn restore(&mut self, seqs: impl IntoIterator<Item = ((String, Stream), u64)>) {
        for (k, v) in seqs {
            let e = self.last_seq.entry(k).or_insert(v);
            *e = (*e).max(v);
        }
    }

    /// Forgets cached keys, after the registry changed.
    pub fn reload_keys(&mut self) {
        self.verifier.reload_keys();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::ChannelId;
    use crate::wire::Sample;

    const NOW: i64 = 1_764_300_000_000;

    fn frame(seq: u64, ts: i64) -> Frame {
        let he = ChannelId::from_name("helium_level_pct").unwrap();
        Frame {
            machine_id: "M1".into(),
            stream: Stream::Temperature,
            seq,
            ts_ms: ts,
            samples: vec![Sample {
                ts_ms: ts,
                values: vec![(he, 80.0)],
            }],
        }
    }

    fn device(key: &DeviceKey) -> Device {
        Device {
            machine_id: "M1".into(),
            site: "s".into(),
            manufacturer: "m".into(),
            model: "x".into(),
            firmware: "1".into(),
            public_key: Some(key.public_hex()),
            revoked: false,
        }
    }

    fn check(t: &mut TrustState, f: &Frame, d: &Device, key: &DeviceKey) -> Result<(), RejectReason> {
        let payload = f.encode();
        let sig = key.sign(&payload);
        t.check(f, d, &payload, Some(sig.as_bytes()), NOW).map_err(|r| r.reason)
    }

    #[test]
    fn accepts_signed_fresh_frames_and_refuses_the_rest() {
        let key = DeviceKey::generate().unwrap();
        let other = DeviceKey::generate().unwrap();
        let d = device(&key);
        let mut t = TrustState::new(TrustConfig::default());
        assert_eq!(check(&mut t, &frame(1, NOW), &d, &key), Ok(()));
        assert_eq!(check(&mut t, &frame(2, NOW), &d, &key), Ok(()));
        assert_eq!(check(&mut t, &frame(2, NOW), &d, &key), Err(RejectReason::Replay));
        assert_eq!(check(&mut t, &frame(1, NOW), &d, &key), Err(RejectReason::Replay));
        assert_eq!(
            check(&mut t, &frame(3, NOW), &d, &other),
            Err(RejectReason::BadSignature)
        );
        assert_eq!(
            check(&mut t, &frame(3, NOW + 3_600_000), &d, &key),
            Err(RejectReason::ClockSkew)
        );
        assert_eq!(
            check(&mut t, &frame(3, NOW - 30 * 86_400_000), &d, &key),
            Err(RejectReason::ClockSkew)
        );
        // a tampered payload fails even with a signature that was valid for the original
        let f = frame(4, NOW);
        let sig = key.sign(&f.encode());
        let mut tampered = f.clone();
        tampered.samples[0].values[0].1 = 10.0;
        assert_eq!(
            t.check(&tampered, &d, &tampered.encode(), Some(sig.as_bytes()), NOW)
                .map_err(|r| r.reason),
            Err(RejectReason::BadSignature)
        );
        assert_eq!(
            t.check(&f, &d, &f.encode(), None, NOW).map_err(|r| r.reason),
            Err(RejectReason::BadSignature)
        );
        let mut revoked = d.clone();
        revoked.revoked = true;
        assert_eq!(
            check(&mut t, &frame(5, NOW), &revoked, &key),
            Err(RejectReason::RevokedDevice)
        );
        assert_eq!(check(&mut t, &frame(5, NOW), &d, &key), Ok(()));
    }

    #[test]
    fn restored_sequences_block_replays_after_restart() {
        let key = DeviceKey::simulated(7, "M1");
        assert_eq!(key.public_hex(), DeviceKey::simulated(7, "M1").public_hex());
        assert_ne!(key.public_hex(), DeviceKey::simulated(8, "M1").public_hex());
        let d = device(&key);
        let mut t = TrustState::new(TrustConfig::default());
        t.restore([(("M1".to_string(), Stream::Temperature), 10)]);
        assert_eq!(check(&mut t, &frame(10, NOW), &d, &key), Err(RejectReason::Replay));
        assert_eq!(check(&mut t, &frame(11, NOW), &d, &key), Ok(()));
        assert_eq!(
            DeviceKey::from_hex(&key.to_hex()).unwrap().public_hex(),
            key.public_hex()
        );
    }
}
