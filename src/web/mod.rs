//! A small synchronous HTTP/1.1 server, for the admin and for `run --metrics`.
//!
//! `server` accepts and runs one thread per connection, `conns` keeps the caps (per
//! address and in all) and the deadlines that keep slow clients from holding it,
//! `request` reads one request within its size caps, `response` writes the answer. Every
//! read and write has a deadline, the whole request has one too, and every size a cap.

mod conns;
mod request;
mod response;
mod server;

pub use request::Request;
pub use response::Response;
pub use server::{REQUEST_DEADLINE, ServeError, Server, tls_config};
