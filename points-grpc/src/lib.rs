//! placeholder
pub mod engine;
pub mod pb;
pub mod store;
