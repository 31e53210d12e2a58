//! The web wallet's files over HTTP (issue 24, spec §5.26): the page, its script and style,
//! read from `node.wallet_dir` (the esbuild output, `web/dist`), and `config.json`, which tells
//! the page the chain's JSON-RPC URL (the wallet reaches the chain itself, so it can exit with
//! the hub down). Only plain file names inside the directory are served.

use super::*;
use axum::http::header;
use axum::response::Redirect;

/// Largest wallet file served, in bytes (the bundle is about 450 KiB).
const MAX_WALLET_FILE_BYTES: u64 = 8 << 20;

/// The page's content security policy: its own script and style only; `connect-src` is open
/// because the chain's RPC endpoint is wherever the operator runs it.
const WALLET_CSP: &str =
    "default-src 'self'; connect-src *; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub(super) async fn root() -> Redirect {
    Redirect::permanent("/wallet/")
}

pub(super) async fn index(State(api): State<Api>) -> Response {
    serve(&api, "index.html").await
}

pub(super) async fn file(State(api): State<Api>, Path(name): Path<String>) -> Response {
    serve(&api, &name).await
}

/// What the web wallet needs besides `/v1/info`.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WalletConfig {
    /// The chain's JSON-RPC URL as browsers reach it.
    rpc_url: String,
}

pub(super) async fn config(State(api): State<Api>) -> Json<WalletConfig> {
    let c = &api.node.config;
    let rpc = if c.node.wallet_rpc_url.is_empty() { &c.chain.rpc_url } else { &c.node.wallet_rpc_url };
    Json(WalletConfig { rpc_url: rpc.clone() })
}

/// The content type of a servable file name; `None` for any other name (a path, a hidden
/// file, an unknown kind).
fn content_type(name: &str) -> Option<&'static str> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return None;
    }
    match name.rsplit_once('.')?.1 {
        "html" => Some("text/html; charset=utf-8"),
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "svg" => Some("image/svg+xml"),
        "png" => Some("image/png"),
        _ => None,
    }
}

async fn serve(api: &Api, name: &str) -> Response {
    let dir = &api.node.config.node.wallet_dir;
    if dir.as_os_str().is_empty() {
        return ApiError::new(
            NodeError::WalletNotInstalled,
            "this node serves no web wallet (node.wallet_dir is empty; scripts/setup builds it into web/dist)",
        )
        .into_response();
    }
    let Some(kind) = content_type(name) else {
        return ApiError::new(NodeError::NoSuchEndpoint, format!("the web wallet has no file {name:?}"))
            .into_response();
    };
    let path = dir.join(name);
    let read = tokio::task::spawn_blocking(move || match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= MAX_WALLET_FILE_BYTES => std::fs::read(&path),
        Ok(_) => Err(std::io::Error::other("not a file or too large")),
        Err(e) => Err(e),
    });
    let bytes = read.await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match bytes {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, WALLET_CSP),
            ],
            body,
        )
            .into_response(),
        Err(_) if name == "index.html" => ApiError::new(
            NodeError::WalletNotInstalled,
            format!("no web wallet at {} (scripts/setup builds it into web/dist)", dir.display()),
        )
        .into_response(),
        Err(_) => {
            ApiError::new(NodeError::NoSuchEndpoint, format!("the web wallet has no file {name:?}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn only_plain_names_of_known_kinds_are_served() {
        assert_eq!(content_type("wallet.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("index.html"), Some("text/html; charset=utf-8"));
        for refused in ["", "../secret.js", "a/b.js", ".env", "config.toml", "wallet", "x.js\0", "%2e%2e.js"] {
            assert_eq!(content_type(refused), None, "{refused:?}");
        }
    }
}
