//! The whole federation on one machine (`devnet`), the network benchmark that runs on it,
//! and the statistics both report.

pub mod bench;
pub mod devnet;
