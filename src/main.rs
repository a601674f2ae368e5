//! The `kubeforge` binary: the same commands as `cargo xtask`, for installing kubeforge as a tool
//! (`cargo install --path .`) and for tests that run it as a separate process.

fn main() -> std::process::ExitCode {
    let code = kubeforge::cli::main();
    kubeforge::fault::report();
    code
}
