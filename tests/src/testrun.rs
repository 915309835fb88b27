//! Running the kernel programs through BPF_PROG_TEST_RUN (owned by the kernel-table tests).
