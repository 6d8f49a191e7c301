//! `ipft`: ipftrace2-compatible tracer; probes are discovered from the
//! running kernel and attached with the generic object built into this binary.

fn main() {
    ipft_gen::btf::install_quiet_panic_hook();
    let args = ipft_runtime::flags::parse_args(None);
    std::process::exit(ipft_runtime::error::exit_code(ipft::run(args)));
}
