//! The federation logic of Aiguillage, as a deterministic state machine that performs no
//! I/O: the node and the simulator both drive it, so a simulation result is evidence about
//! the real network.

pub mod devnet;
pub mod profile;

pub use devnet::{DevnetAssumptions, DevnetCapacity};
pub use profile::{Confidence, Profile, ProfileError};
