//! Black-box test with the official Rust SDK (`azure_security_keyvault_keys`): the built
//! `keystead` binary in dev mode, challenge-resource verification on, the vault host mapped to
//! 127.0.0.1 and the dev CA trusted by the SDK's HTTP client. A small `TokenCredential` gets its
//! token from Keystead's own OAuth2 token endpoint (client credentials).
//!
//! Covers create (RSA, EC), get, sign/verify (PS256, ES256), encrypt/decrypt (RSA-OAEP-256) and
//! wrap/unwrap. Signatures are also checked against the returned public JWK outside the SDK.

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, EncryptionAlgorithm, KeyClientEncryptOptions,
    KeyOperationParameters, KeyType, SignParameters, SignatureAlgorithm, VerifyParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceExt};
use keystead_crypto::keys::{self as kc, EcCurve, Hash, RsaScheme};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
    creds: serde_json::Value,
    ca_pem: Vec<u8>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_client(ca_pem: &[u8], port: u16) -> reqwest_sdk::Client {
    let ca = reqwest_sdk::Certificate::from_pem(ca_pem).expect("dev CA");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    reqwest_sdk::Client::builder()
        .tls_certs_only([ca])
        // The machine's resolver may not map *.localhost: pin the names Keystead serves.
        .resolve("demo.vault.localhost", local)
        .resolve("localhost", local)
        .no_proxy()
        .build()
        .expect("HTTP client")
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_keystead"))
        .args(["dev", "--data-dir"])
        .arg(&data)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keystead");
    let mut server = Server {
        child,
        _dir: dir,
        port,
        creds: serde_json::Value::Null,
        ca_pem: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "keystead did not become healthy");
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("keystead exited during start-up: {status}");
        }
        if let Some((ca, creds)) = ready(&data, port).await {
            server.ca_pem = ca;
            server.creds = creds;
            return server;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready(data: &Path, port: u16) -> Option<(Vec<u8>, serde_json::Value)> {
    let ca = std::fs::read(data.join("ca.pem")).ok()?;
    let creds = std::fs::read(data.join("dev-credentials.json")).ok()?;
    let creds = serde_json::from_slice(&creds).ok()?;
    let client = http_client(&ca, port);
    let health = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .ok()?;
    health.status().is_success().then_some((ca, creds))
}

/// Client credentials against Keystead's token endpoint.
#[derive(Debug)]
struct KeysteadCredential {
    http: reqwest_sdk::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
}

#[async_trait::async_trait]
impl TokenCredential for KeysteadCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let other = |e: String| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e)
        };
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            enc(&self.client_id),
            enc(&self.client_secret),
            enc(&scopes.join(" "))
        );
        let response = self
            .http
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| other(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| other(e.to_string()))?;
        if !status.is_success() {
            return Err(other(format!("token endpoint answered {status}: {text}")));
        }
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| other(e.to_string()))?;
        let token = json["access_token"]
            .as_str()
            .ok_or_else(|| other("no access_token".into()))?;
        let expires_in = json["expires_in"].as_i64().unwrap_or(3600);
        Ok(AccessToken::new(
            Secret::new(token.to_string()),
            OffsetDateTime::now_utc() + AzDuration::seconds(expires_in),
        ))
    }
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn key_client(server: &Server) -> KeyClient {
    let field = |name: &str| server.creds[name].as_str().expect(name).to_string();
    let http = http_client(&server.ca_pem, server.port);
    let credential = Arc::new(KeysteadCredential {
        http: http.clone(),
        token_url: format!(
            "{}/{}/oauth2/v2.0/token",
            field("authority_host"),
            field("tenant_id")
        ),
        client_id: field("client_id"),
        client_secret: field("client_secret"),
    });
    let options = KeyClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            ..Default::default()
        },
        // Challenge-resource verification stays on (the default).
        verify_challenge_resource: Some(true),
        ..Default::default()
    };
    KeyClient::new(&field("vault_url"), credential, Some(options)).expect("key client")
}

fn sha256(data: &[u8]) -> Vec<u8> {
    keystead_crypto::random::sha256(data).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_keys_round_trip() {
    let server = start().await;
    let client = key_client(&server);

    // ---- EC P-256: create, sign (service), verify (service and independently)
    let ec = client
        .create_key(
            "sdk-ec",
            CreateKeyParameters {
                kty: Some(KeyType::Ec),
                curve: Some(CurveName::P256),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("create EC key")
        .into_model()
        .unwrap();
    let jwk = ec.key.as_ref().expect("jwk");
    assert!(matches!(jwk.kty, Some(KeyType::Ec)));
    let (x, y) = (jwk.x.clone().unwrap(), jwk.y.clone().unwrap());
    assert_eq!((x.len(), y.len()), (32, 32));
    assert!(jwk.d.is_none());
    let version = ec.resource_id().unwrap().version.unwrap();

    let digest = sha256(b"signed by the Rust SDK");
    let signed = client
        .sign(
            "sdk-ec",
            SignParameters {
                algorithm: Some(SignatureAlgorithm::Es256),
                value: Some(digest.clone()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("sign")
        .into_model()
        .unwrap();
    let signature = signed.result.clone().expect("signature");
    assert_eq!(signature.len(), 64, "raw r||s");
    assert!(
        kc::ec_verify_digest(EcCurve::P256, &x, &y, Hash::Sha256, &digest, &signature).unwrap()
    );
    let verified = client
        .verify(
            "sdk-ec",
            &version,
            VerifyParameters {
                algorithm: Some(SignatureAlgorithm::Es256),
                digest: Some(digest.clone()),
                signature: Some(signature.clone()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("verify")
        .into_model()
        .unwrap();
    assert_eq!(verified.value, Some(true));
    let forged = client
        .verify(
            "sdk-ec",
            &version,
            VerifyParameters {
                algorithm: Some(SignatureAlgorithm::Es256),
                digest: Some(sha256(b"something else")),
                signature: Some(signature),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("verify forged")
        .into_model()
        .unwrap();
    assert_eq!(forged.value, Some(false));

    // ---- RSA 2048: create, PS256, encrypt/decrypt, wrap/unwrap
    let rsa = client
        .create_key(
            "sdk-rsa",
            CreateKeyParameters {
                kty: Some(KeyType::Rsa),
                key_size: Some(2048),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("create RSA key")
        .into_model()
        .unwrap();
    let jwk = rsa.key.as_ref().expect("jwk");
    let (n, e) = (jwk.n.clone().unwrap(), jwk.e.clone().unwrap());
    assert_eq!(n.len(), 256);
    assert_eq!(e, vec![1, 0, 1]);
    let version = rsa.resource_id().unwrap().version.unwrap();
    let fetched = client
        .get_key("sdk-rsa", None)
        .await
        .expect("get key")
        .into_model()
        .unwrap();
    assert_eq!(fetched.key.unwrap().n.unwrap(), n);

    let digest = sha256(b"PS256 from Rust");
    let signed = client
        .sign(
            "sdk-rsa",
            SignParameters {
                algorithm: Some(SignatureAlgorithm::Ps256),
                value: Some(digest.clone()),
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("sign PS256")
        .into_model()
        .unwrap();
    let signature = signed.result.unwrap();
    assert!(
        kc::rsa_verify_digest(&n, &e, RsaScheme::Pss, Hash::Sha256, &digest, &signature).unwrap()
    );

    let encrypted = client
        .encrypt(
            "sdk-rsa",
            KeyOperationParameters {
                algorithm: Some(EncryptionAlgorithm::RsaOaep256),
                value: Some(b"hello from the Rust SDK".to_vec()),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            Some(KeyClientEncryptOptions {
                key_version: Some(version.clone()),
                ..Default::default()
            }),
        )
        .await
        .expect("encrypt")
        .into_model()
        .unwrap();
    let decrypted = client
        .decrypt(
            "sdk-rsa",
            &version,
            KeyOperationParameters {
                algorithm: Some(EncryptionAlgorithm::RsaOaep256),
                value: encrypted.result.clone(),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("decrypt")
        .into_model()
        .unwrap();
    assert_eq!(
        decrypted.result.as_deref(),
        Some(&b"hello from the Rust SDK"[..])
    );

    let dek = vec![7u8; 32];
    let wrapped = client
        .wrap_key(
            "sdk-rsa",
            KeyOperationParameters {
                algorithm: Some(EncryptionAlgorithm::RsaOaep),
                value: Some(dek.clone()),
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("wrap")
        .into_model()
        .unwrap();
    let unwrapped = client
        .unwrap_key(
            "sdk-rsa",
            "",
            KeyOperationParameters {
                algorithm: Some(EncryptionAlgorithm::RsaOaep),
                value: wrapped.result,
                ..Default::default()
            }
            .try_into()
            .unwrap(),
            None,
        )
        .await
        .expect("unwrap")
        .into_model()
        .unwrap();
    assert_eq!(unwrapped.result, Some(dek));

    // ---- errors surface with the service's status
    let Err(err) = client.get_key("no-such-key", None).await else {
        panic!("expected a 404 for a missing key");
    };
    assert_eq!(err.http_status().map(u16::from), Some(404));
}
