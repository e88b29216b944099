//! HTTPS client for the admin API, configured from `<data-dir>/admin.json` or flags.

use crate::cli::AdminTarget;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// `admin.json`, written by the server at first start.
#[derive(Deserialize)]
pub struct AdminFile {
    pub endpoint: String,
    pub token: String,
    pub ca_cert: Option<String>,
}

pub struct AdminClient {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

impl AdminClient {
    pub fn new(target: &AdminTarget) -> Result<AdminClient, String> {
        let path = target.data_dir.join("admin.json");
        let file: Option<AdminFile> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let endpoint = target
            .endpoint
            .clone()
            .or_else(|| file.as_ref().map(|f| f.endpoint.clone()))
            .ok_or_else(|| format!("no --endpoint and no readable {}", path.display()))?;
        let token = target
            .token
            .clone()
            .or_else(|| file.as_ref().map(|f| f.token.clone()))
            .ok_or_else(|| format!("no --token and no readable {}", path.display()))?;
        let ca_path = target
            .ca_cert
            .clone()
            .or_else(|| {
                file.as_ref()
                    .and_then(|f| f.ca_cert.clone())
                    .map(Into::into)
            })
            .ok_or_else(|| "no CA certificate: pass --ca-cert".to_string())?;
        let ca_pem =
            std::fs::read(&ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?;
        let ca =
            reqwest::Certificate::from_pem(&ca_pem).map_err(|e| format!("CA certificate: {e}"))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(AdminClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.endpoint))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body: Value = if text.is_empty() {
            serde_json::json!({"status": status.as_u16()})
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(body)
        } else {
            let message = body["error"]["message"].as_str().map(str::to_string);
            Err(format!(
                "{status}: {}",
                message.unwrap_or_else(|| body.to_string())
            ))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.get(format!("{}{path}", self.endpoint)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.send(
            self.http
                .post(format!("{}{path}", self.endpoint))
                .json(&body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.delete(format!("{}{path}", self.endpoint)))
            .await
    }
}
