//! Shared helpers for portmon's tests that run the real kernel programs.

pub mod bench;
pub mod daemon;
pub mod frames;
pub mod netns;
pub mod pin;
pub mod prometheus;
pub mod testrun;
