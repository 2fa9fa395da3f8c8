//! The real server over mutual TLS: certificates made with the `openssl` command (the test
//! is skipped where it is missing), a client with a certificate gets through, one without
//! is refused, and the CLI speaks TLS too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{auth, binary, Server};
use points_grpc::pb;
use std::path::Path;
use std::process::Command;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=points test CA",
    ]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        let mut req = vec!["req"];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl is not installed: skipping the TLS test");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_certificates(c);
    let data = tempfile::tempdir().unwrap();
    let path = |n: &str| c.join(n).to_str().unwrap().to_owned();
    let server = Server::start_in(
        &data.path().join("data"),
        &[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server.key"),
            "--tls-client-ca",
            &path("ca.pem"),
        ],
    );
    let admin = server.admin_key();
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}");
    let read = |n: &str| std::fs::read(c.join(n)).unwrap();

    // With the CA and a client certificate: served.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("client.pem"), read("client.key")))
        .domain_name("localhost");
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin_client = pb::admin_client::AdminClient::new(channel);
    let programs = admin_client
        .list_programs(auth(pb::ListProgramsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(programs.programs.is_empty());

    // Without a client certificate: refused during the handshake.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    let refused = async {
        let channel = Channel::from_shared(url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await?;
        pb::admin_client::AdminClient::new(channel)
            .list_programs(auth(pb::ListProgramsRequest::default(), &admin))
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    }
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate got through"
    );

    // The CLI over mutual TLS.
    let out = Command::new(binary("points"))
        .env_remove("POINTS_PROGRAM")
        .args([
            "--server",
            &url,
            "--api-key",
            &admin,
            "--tls-ca",
            &path("ca.pem"),
            "--tls-cert",
            &path("client.pem"),
            "--tls-key",
            &path("client.key"),
            "program",
            "list",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("PROGRAM_ID"));
}
