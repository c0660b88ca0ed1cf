//! Turning a request's parameters and body into a validated chunk or test intent.

pub mod geometry;
pub mod multipart;
pub mod params;

pub use geometry::{Geometry, GeometryError};
pub use params::{ChunkRequest, Dialect, ParamError, Params};
