//! `p256` (the product's crypto) against `ring` for the same operations,
//! measured here only, and only with the `compare-ring` feature (the shipped
//! binary does not link ring; `tools/bench --with-ring` turns it on).

use serde::Serialize;

/// Medians (µs) and ratios.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Comparison {
    /// Library measured against.
    pub other: &'static str,
    /// Runs per operation.
    pub runs: usize,
    /// ECDSA P-256/SHA-256 verify of a 300-byte message, p256.
    pub verify_us_p256: f64,
    /// … ring.
    pub verify_us_ring: f64,
    /// p256 / ring.
    pub verify_ratio: f64,
    /// ECDH alone (static key × peer point), p256.
    pub ecdh_us_p256: f64,
    /// Ephemeral key generation + ECDH (ring's agreement API always generates), p256.
    pub keygen_ecdh_us_p256: f64,
    /// … ring.
    pub keygen_ecdh_us_ring: f64,
    /// p256 / ring, key generation + ECDH.
    pub keygen_ecdh_ratio: f64,
}

/// Measures `runs` runs of each operation after `warmup` runs.
#[cfg(feature = "compare-ring")]
pub fn compare(warmup: usize, runs: usize) -> anyhow::Result<Comparison> {
    use std::time::Instant;

    use anyhow::anyhow;
    use citycard_proto::crypto;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use ring::agreement;
    use ring::rand::SystemRandom;
    use ring::signature::{self, UnparsedPublicKey};

    use crate::stats::median_us;

    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let key = crypto::generate(&mut rng);
    let message = [0x42u8; 300];
    let sig = crypto::sign(&key, &message);
    let pk = key.public_key();
    let pk_bytes: Vec<u8> = {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        pk.to_encoded_point(false).as_bytes().to_vec()
    };
    let ring_pk = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pk_bytes.clone());
    ring_pk
        .verify(&message, &sig)
        .map_err(|_| anyhow!("ring rejects p256's signature"))?;
    let sys = SystemRandom::new();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, pk_bytes);

    let mut v_p256 = Vec::with_capacity(runs);
    let mut v_ring = Vec::with_capacity(runs);
    let mut e_p256 = Vec::with_capacity(runs);
    let mut ke_p256 = Vec::with_capacity(runs);
    let mut ke_ring = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let s = Instant::now();
        let ok = crypto::verify(&pk, &message, &sig).is_ok();
        let a = s.elapsed();
        let s = Instant::now();
        let ok2 = ring_pk.verify(&message, &sig).is_ok();
        let b = s.elapsed();
        if !(ok && ok2) {
            return Err(anyhow!("signature check failed"));
        }
        let s = Instant::now();
        std::hint::black_box(crypto::ecdh(&key, &pk));
        let c = s.elapsed();
        let s = Instant::now();
        let eph = crypto::generate(&mut rng);
        std::hint::black_box(eph.public_key());
        std::hint::black_box(crypto::ecdh(&eph, &pk));
        let d = s.elapsed();
        let s = Instant::now();
        let eph = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &sys)
            .map_err(|_| anyhow!("ring keygen"))?;
        let pub_r = eph
            .compute_public_key()
            .map_err(|_| anyhow!("ring public key"))?;
        std::hint::black_box(pub_r.as_ref().len());
        agreement::agree_ephemeral(eph, &peer, |z| {
            std::hint::black_box(z.len());
        })
        .map_err(|_| anyhow!("ring agreement"))?;
        let e = s.elapsed();
        if i >= warmup {
            v_p256.push(a);
            v_ring.push(b);
            e_p256.push(c);
            ke_p256.push(d);
            ke_ring.push(e);
        }
    }
    let verify_us_p256 = median_us(&mut v_p256);
    let verify_us_ring = median_us(&mut v_ring);
    let keygen_ecdh_us_p256 = median_us(&mut ke_p256);
    let keygen_ecdh_us_ring = median_us(&mut ke_ring);
    Ok(Comparison {
        other: "ring 0.17",
        runs,
        verify_us_p256,
        verify_us_ring,
        verify_ratio: verify_us_p256 / verify_us_ring,
        ecdh_us_p256: median_us(&mut e_p256),
        keygen_ecdh_us_p256,
        keygen_ecdh_us_ring,
        keygen_ecdh_ratio: keygen_ecdh_us_p256 / keygen_ecdh_us_ring,
    })
}
