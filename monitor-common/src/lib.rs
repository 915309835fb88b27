//! Everything portmon's kernel programs and its daemon must agree on.
//!
//! `no_std` so that the same code is compiled into the eBPF object and into the
//! host binary: the counter layout ([`layout`]) and the packet parser ([`parse`]).
#![no_std]

pub mod layout;
pub mod parse;
