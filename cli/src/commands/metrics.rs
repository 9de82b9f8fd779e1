//! `tierback metrics [--serve]`: the Prometheus exposition, once or over HTTP.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use anyhow::{Context, Result};
use tierback_engine::catalog::Catalog;
use tierback_engine::clock::now;
use tierback_engine::config::Config;
use tierback_engine::metrics::render;

use super::EXIT_OK;

const DEFAULT_LISTEN: &str = "127.0.0.1:9188";

pub fn run(config: &Config, serve: bool) -> Result<i32> {
    if !serve {
        let catalog = Catalog::open_read_only(&config.catalog_path)?;
        print!("{}", render(config, &catalog, now())?);
        return Ok(EXIT_OK);
    }
    let addr = config.metrics.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    eprintln!("serving metrics on http://{addr}/metrics");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request_line = String::new();
        if BufReader::new(&stream)
            .read_line(&mut request_line)
            .is_err()
        {
            continue;
        }
        // Rendered per scrape from the catalog: always current, nothing cached.
        let (status, body) = if request_line.starts_with("GET /metrics ") {
            match Catalog::open_read_only(&config.catalog_path)
                .and_then(|c| render(config, &c, now()))
            {
                Ok(text) => ("200 OK", text),
                Err(e) => ("500 Internal Server Error", format!("{e}\n")),
            }
        } else {
            ("404 Not Found", "try /metrics\n".to_owned())
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(EXIT_OK)
}
