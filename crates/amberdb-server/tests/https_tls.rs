//! HTTPS with rustls from PEM certificate and key files.

#![allow(clippy::unwrap_used)]

mod common;

use amberdb_server::config::TlsFiles;
use common::TestServer;

#[test]
fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let s = TestServer::start_in(&dir.path().join("data"), move |c| c.tls = Some(files));
    assert!(s.base.starts_with("https://"));

    let root = ureq::tls::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!(
        "https://localhost:{}/v1/collections/players/docs/a",
        s.addr.port()
    );
    let r = common::send(
        &agent,
        "PUT",
        &url,
        &[("content-type", "application/json")],
        Some(b"{\"tls\": true}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        common::send(&agent, "GET", &url, &[], None).json()["tls"],
        true
    );

    // Plain HTTP to the TLS port does not get through.
    let plain = format!("http://127.0.0.1:{}/healthz", s.addr.port());
    assert!(common::try_send(&common::agent(), "GET", &plain, &[], None)
        .map(|r| r.status != 200)
        .unwrap_or(true));
}

#[test]
fn a_missing_certificate_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&dir.path().join("data"));
    config.tls = Some(TlsFiles {
        cert: dir.path().join("nope.pem"),
        key: dir.path().join("nope.key"),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(amberdb_server::Server::bind(config))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}
