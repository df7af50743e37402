//! The signers against the providers' own published vectors (`tests/fixtures/providers/` of the
//! workspace): each signs from its provider's documented scheme, written out here apart from
//! tocsin's verifiers, and must agree with what the providers really sent.

use std::path::PathBuf;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{TimeZone, Utc};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use rsa::{RsaPublicKey, pkcs1::DecodeRsaPublicKey, pkcs1v15};
use serde_json::Value;
use tocsin_fakes::{
    mail_signers::{SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, SendGridSigner, mailgun_signature},
    sns::string_to_sign,
};
use x509_cert::{Certificate, der::DecodePem};

fn dir(provider: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/providers")
        .join(provider)
}

fn json(provider: &str, file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir(provider).join(file)).unwrap()).unwrap()
}

#[test]
fn the_mailgun_signer_reproduces_mailguns_vectors() {
    let vectors = json("mailgun", "vectors.json");
    for case in vectors["cases"].as_array().unwrap() {
        let s = |k: &str| case[k].as_str().unwrap();
        let ours = mailgun_signature(s("signing_key"), s("timestamp"), s("token"));
        assert_eq!(
            ours == s("signature"),
            s("expect") == "valid",
            "{}",
            s("name")
        );
    }
}

/// Verifies an SNS message (JSON) with a certificate, as the SNS documentation describes.
fn sns_verifies(message: &Value, certificate: &str) -> bool {
    let pem = std::fs::read_to_string(dir("sns").join(certificate)).unwrap();
    let cert = Certificate::from_pem(pem.as_bytes()).unwrap();
    let key = RsaPublicKey::from_pkcs1_der(
        cert.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap();
    let Ok(sig) = STANDARD.decode(message["Signature"].as_str().unwrap()) else {
        return false;
    };
    let Ok(sig) = pkcs1v15::Signature::try_from(sig.as_slice()) else {
        return false;
    };
    let text = string_to_sign(message);
    use rsa::signature::Verifier as _;
    match message["SignatureVersion"].as_str() {
        Some("1") => pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key)
            .verify(text.as_bytes(), &sig)
            .is_ok(),
        Some("2") => pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
            .verify(text.as_bytes(), &sig)
            .is_ok(),
        _ => false,
    }
}

#[test]
fn the_sns_signer_lays_out_the_string_aws_signs() {
    let vectors = json("sns", "vectors.json");
    for case in vectors["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut message = json("sns", case["message_file"].as_str().unwrap());
        if let Some(changes) = case["mutate"].as_object() {
            for (k, v) in changes {
                message[k] = v.clone();
            }
        }
        for k in case["remove"].as_array().into_iter().flatten() {
            message.as_object_mut().unwrap().remove(k.as_str().unwrap());
        }
        assert_eq!(
            sns_verifies(&message, case["certificate"].as_str().unwrap()),
            case["expect"] == "valid",
            "{name}"
        );
    }
}

#[test]
fn the_sendgrid_signer_signs_what_sendgrids_vectors_verify() {
    let vectors = json("sendgrid", "vectors.json");
    assert!(
        vectors["headers"]["signature"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(SENDGRID_SIGNATURE)
    );
    assert!(
        vectors["headers"]["timestamp"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(SENDGRID_TIMESTAMP)
    );
    // The documented check: ECDSA P-256/SHA-256 over the timestamp then the body, a base64 DER
    // signature, a base64 DER SubjectPublicKeyInfo key.
    let verifies = |key: &str, ts: &str, sig: &str, body: &[u8]| {
        let key = VerifyingKey::from_public_key_der(&STANDARD.decode(key).unwrap()).unwrap();
        let sig = Signature::from_der(&STANDARD.decode(sig).unwrap()).unwrap();
        key.verify(&[ts.as_bytes(), body].concat(), &sig).is_ok()
    };
    let case = &vectors["cases"][0];
    let body = std::fs::read(dir("sendgrid").join("signed-dropped.body")).unwrap();
    let s = |k: &str| case[k].as_str().unwrap();
    assert!(verifies(
        s("public_key"),
        s("timestamp"),
        s("signature"),
        &body
    ));
    // The fake's request passes the same check.
    let signer = SendGridSigner::new();
    let at = Utc.timestamp_opt(1600112502, 0).unwrap();
    let [(sig_name, sig), (ts_name, ts)] = signer.headers(&body, at);
    assert_eq!(
        (sig_name, ts_name),
        (SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)
    );
    assert_eq!(ts, "1600112502");
    assert!(verifies(&signer.public_key(), &ts, &sig, &body));
    assert!(!verifies(s("public_key"), &ts, &sig, &body), "its own key");
}
