//! TLS for `https://` apiEndpoints: the workspace's trust setup (`fleet_http::tls`).

pub use fleet_http::tls::*;
