pub mod config;
mod placement;

pub use config::{Config, Placement, ResolvedConfig};
