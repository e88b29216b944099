//! `keystead`: the server (`dev`, `serve`, `witness`, `demo geo`) and the admin CLI (`vault`,
//! `principal`, `role`, `cluster`, `region`, `geo init`).

mod admin_client;
mod cli;
mod cluster_cmd;
mod config;
mod demo_geo;
mod dev;
mod files;
mod geo_cmd;
mod server;
mod tls;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a request allocates and frees many small buffers on
/// several threads, and perf showed glibc's malloc/free/consolidate at about a tenth of the
/// server's CPU under read load. Secret-bearing buffers are still zeroized by their owners
/// before they are freed; the allocator choice does not change that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (rustls server and reqwest client).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYSTEAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keystead: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keystead: {e}");
            ExitCode::FAILURE
        }
    }
}
