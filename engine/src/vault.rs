//! Secrets from HashiCorp Vault's KV engine (`vault:secret/zentoria/backup/minio#access_key`).
//!
//! Follows the Vault CLI's conventions: the server is `VAULT_ADDR`, the token `VAULT_TOKEN` or
//! the file `~/.vault-token`, and `VAULT_NAMESPACE` is sent when set. The first path segment is
//! the mount; KV version 2 (`/v1/<mount>/data/<rest>`) is tried first, then version 1
//! (`/v1/<mount>/<rest>`). Values are cached for the life of the process so one run asks once.
//! The token and the values never appear in errors or logs.
//!
//! `VAULT_ADDR` must be `https://` unless it is this machine or the config's `[vault]` says
//! `allow_insecure_http = true`; a private CA comes from `[vault] ca_file`, else the CLI's
//! `VAULT_CACERT`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::tls::Transport;
use crate::{Error, Result};

static CACHE: Mutex<Option<HashMap<(String, String), String>>> = Mutex::new(None);

/// The config's `[vault]` transport settings, set when the config is loaded.
static TRANSPORT: Mutex<Option<Transport>> = Mutex::new(None);

/// Sets how `vault:` references reach Vault (from the config's `[vault]` table).
pub fn set_transport(transport: Transport) {
    *TRANSPORT.lock().unwrap() = Some(transport);
}

fn transport() -> Transport {
    let mut t = TRANSPORT.lock().unwrap().clone().unwrap_or_default();
    if t.ca_file.is_none() {
        t.ca_file = std::env::var_os("VAULT_CACERT").map(Into::into);
    }
    t
}

/// Reads `field` of the secret at `path`.
pub fn read(path: &str, field: &str) -> Result<String> {
    let key = (path.to_owned(), field.to_owned());
    if let Some(v) = CACHE.lock().unwrap().as_ref().and_then(|c| c.get(&key)) {
        return Ok(v.clone());
    }
    let reference = format!("vault:{path}#{field}");
    let fail = |message: String| Error::Secret {
        reference: reference.clone(),
        message,
    };
    let addr = std::env::var("VAULT_ADDR").map_err(|_| fail("VAULT_ADDR is not set".into()))?;
    let token = match std::env::var("VAULT_TOKEN") {
        Ok(t) => t,
        Err(_) => {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            std::fs::read_to_string(format!("{home}/.vault-token"))
                .map(|t| t.trim().to_owned())
                .map_err(|_| {
                    fail("no Vault token: set VAULT_TOKEN or write ~/.vault-token".into())
                })?
        }
    };
    let (mount, rest) = path.split_once('/').ok_or_else(|| {
        fail("the path needs a mount and a secret, like secret/zentoria/backup/minio".into())
    })?;
    let base = addr.trim_end_matches('/');
    let transport = transport();
    transport
        .check_url(base, "[vault]", "(VAULT_ADDR)")
        .map_err(fail)?;
    let tls = transport.ureq_tls().map_err(|e| fail(e.to_string()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into();
    let get = |url: String| -> Result<(u16, String)> {
        let mut req = agent.get(&url).header("X-Vault-Token", &token);
        if let Ok(ns) = std::env::var("VAULT_NAMESPACE") {
            req = req.header("X-Vault-Namespace", &ns);
        }
        let mut resp = req
            .call()
            .map_err(|e| fail(format!("cannot reach Vault at {base}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(format!("reading Vault's answer: {e}")))?;
        Ok((status, body))
    };

    let (status, body) = get(format!("{base}/v1/{mount}/data/{rest}"))?;
    let data = match status {
        200 => parse(&body).and_then(|v| v.get("data").and_then(|d| d.get("data")).cloned()),
        // Not a KV v2 mount (or no such secret there): try KV v1.
        404 | 403 | 400 => {
            let (status, body) = get(format!("{base}/v1/{mount}/{rest}"))?;
            match status {
                200 => parse(&body).and_then(|v| v.get("data").cloned()),
                403 => return Err(fail("permission denied (check the token's policy)".into())),
                404 => return Err(fail("no such secret".into())),
                s => return Err(fail(format!("Vault answered HTTP {s}"))),
            }
        }
        s => return Err(fail(format!("Vault answered HTTP {s}"))),
    };
    let value = data
        .and_then(|d| d.get(field).and_then(|v| v.as_str()).map(str::to_owned))
        .ok_or_else(|| fail(format!("the secret has no string field {field:?}")))?;
    CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, value.clone());
    Ok(value)
}

fn parse(body: &str) -> Option<serde_json::Value> {
    serde_json::from_str(body).ok()
}
