//! `ipft`: ipftrace2-compatible tracer; probes are discovered from the
//! running kernel and attached with the generic object built into this binary.

use clap::Parser;

fn main() {
    let args = ipft_runtime::args::IpftArgs::parse();
    std::process::exit(ipft_runtime::trace::main_with(
        args,
        ipft_runtime::trace::Source::Generic,
    ));
}
