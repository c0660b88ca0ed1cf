//! The demo page: our own uploader in plain JavaScript, speaking the resumable.js protocol.

use crate::request::Response;

const DEMO_PAGE: &str = include_str!("../../../assets/demo.html");

pub fn page() -> Response {
    Response::html(200, DEMO_PAGE.to_string())
}
