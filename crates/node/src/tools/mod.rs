//! The whole federation on one machine (`devnet`), the network benchmark that runs on it,
//! and the floor each benchmark figure is compared with.

pub mod bench;
pub mod console_bench;
pub mod devnet;
pub mod floor;
