//! Shared helpers for portmon integration tests.
