pub mod config;
mod placement;
mod preflight;

pub use config::{Config, Placement, ResolvedConfig};
