//! Hand-built Ethernet frames for the packet-shape tables (owned by the kernel-table tests).
