//! `/console`: the web console's page, script and styles, compiled into the
//! binary (`host/console/`), so a host serves them with nothing to install
//! and nothing fetched from elsewhere. The assets hold no data: the page
//! asks for the admin token and reads everything through the bearer-
//! protected `/admin` API (`/admin/topology`, `/admin/stats`,
//! `/admin/dlq/*`, `/admin/plugins`, `/admin/preview/*`), so the console
//! shows exactly what the token may see.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ErrorBody, ErrorCode, error};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The console's files, by the name `/console/{asset}` serves them under.
const ASSETS: &[Asset] = &[
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "uplot.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/vendor/uplot.min.js"),
    },
    Asset {
        name: "uplot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/vendor/uplot.min.css"),
    },
];

/// The page.
const INDEX: &[u8] = include_bytes!("../../console/index.html");

/// Only this host's own files, inline styles for uPlot's charts, and
/// fetches to this host.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'";

fn serve(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The web console
///
/// The page of the console: the pipeline graph, live rates and lag, dead
/// letters with redrive, plugin versions with push and rollback, and the
/// preview of a plugin version. It asks for the admin token and reads the
/// `/admin` API with it.
#[utoipa::path(get, path = "/console", tag = "console", operation_id = "console",
    responses((status = 200, description = "The console's HTML page.", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> Response {
    serve("text/html; charset=utf-8", INDEX)
}

/// One of the console's script and style files
#[utoipa::path(get, path = "/console/{asset}", tag = "console", operation_id = "consoleAsset",
    params(("asset" = String, Path, description = "A file of the console, e.g. `console.js`.")),
    responses(
        (status = 200, description = "The file: a script or a style sheet.", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "The console has no such file (`not_found`).", body = ErrorBody),
    ))]
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset.content_type, asset.body),
        None => error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "the console has no file `{name}` (files: {})",
                ASSETS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files() {
        let page = std::str::from_utf8(INDEX).expect("UTF-8 page");
        for piece in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            let target = &piece[..piece.find('"').expect("closing quote")];
            if target.starts_with('#') || target == "data:," {
                continue;
            }
            let name = target
                .strip_prefix("/console/")
                .unwrap_or_else(|| panic!("the page loads {target} from outside /console"));
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "the page loads /console/{name}, which is not embedded"
            );
        }
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            assert!(
                !text.contains("://cdn") && !text.contains("googleapis"),
                "{} reaches out to a CDN",
                asset.name
            );
        }
    }
}
