//! Rebuild the kernel programs when the bpf-linker binary changes (it is an undeclared
//! dependency of the BPF target; see aya-template).

fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found: run `cargo xtask setup`"),
    }
}
