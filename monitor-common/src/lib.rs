//! Everything portmon's kernel programs and its daemon must agree on.
//!
//! `no_std` so that the same code is compiled into the eBPF object and into the
//! host binary: the counter layout ([`layout`]) and the packet parser ([`parse`]).
#![no_std]
// The parser and index helpers run inside eBPF programs, where a call that is not inlined
// becomes a BPF-to-BPF call with its own stack frame and verifier state: inline them.
#![expect(
    clippy::inline_always,
    reason = "kernel-side code must be inlined into the entry points"
)]

pub mod layout;
pub mod parse;
pub mod payload;
