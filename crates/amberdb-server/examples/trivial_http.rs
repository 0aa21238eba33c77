//! The baseline for the HTTP load figure: the same stack (tokio, axum, axum-server) with
//! handlers that do no work. `GET /get` answers a small JSON document, `PUT /put/{key}` reads the
//! body and answers a small JSON result. Usage: `trivial_http 127.0.0.1:0` (prints the URL).

use axum::body::Bytes;
use axum::routing::{get, put};
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = std::net::TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    println!("trivial: serving http://{}", listener.local_addr()?);
    let app = Router::new()
        .route(
            "/get",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"hp":20,"inventory":[1,2,3],"name":"player"}"#,
                )
            }),
        )
        .route(
            "/put/{key}",
            put(|body: Bytes| async move {
                let n = body.len();
                (
                    [("content-type", "application/json")],
                    format!(r#"{{"created":true,"version":1,"bytes":{n}}}"#),
                )
            }),
        );
    axum_server::from_tcp(listener)?
        .serve(app.into_make_service())
        .await
}
