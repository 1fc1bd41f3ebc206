//! The `onnx-serving` binary: parses the command line and runs the server.

use clap::Parser;
use onnx_serving::config::cli::split_unknown_flags;
use onnx_serving::config::{Cli, Command};
use onnx_serving::server::{run, ServerConfig};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    // NOTE: TF Serving has no subcommand; `onnx-serving --model_name=...` means `serve`.
    if args.get(1).is_some_and(|a| a.starts_with("--") && a != "--help" && a != "--version") {
        args.insert(1, "serve".to_string());
    }
    let (args, unknown) = split_unknown_flags(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // NOTE: help and version go to stdout with exit 0; a bad flag exits 255, as TF Serving does.
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let _ = error.print();
            return std::process::ExitCode::from(255);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn")))
        .with_writer(std::io::stderr)
        // NOTE: colours only on a terminal, so that log files and pipes stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    for arg in unknown {
        tracing::warn!(argument = %arg, "unknown argument, ignored");
    }
    let serve = match cli.command {
        Command::Serve(serve) => serve,
        Command::Convert(args) => return convert(&args),
    };
    if serve.print_version {
        println!("onnx-serving: {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    let config = match ServerConfig::from_args(&serve) {
        Ok(config) => config,
        Err(error) => {
            return startup_failure(&format!("INVALID_ARGUMENT: {error:#}"));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            return startup_failure(&format!("INTERNAL: cannot start the async runtime: {error}"));
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => startup_failure(&format!("UNKNOWN: {error:#}")),
    }
}

/// `onnx-serving convert`: runs the SavedModel converter compiled into the binary.
fn convert(args: &onnx_serving::config::cli::ConvertArgs) -> std::process::ExitCode {
    let output = args
        .output_dir
        .clone()
        .unwrap_or_else(|| args.saved_model_dir.join(onnx_serving::platforms::tensorflow::LOCAL_CONVERSION_DIR));
    match onnx_serving::platforms::tensorflow::run_converter(
        &args.python,
        &args.saved_model_dir,
        &output,
        args.keep_declared_shapes,
        None,
    ) {
        Ok(()) => {
            println!("converted {} into {}", args.saved_model_dir.display(), output.display());
            std::process::ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("error: {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reports a startup failure as TF Serving does (on stdout, exit code 255), and on stderr
/// beside the logs.
fn startup_failure(status: &str) -> std::process::ExitCode {
    let line = format!("Failed to start server. Error: {status}");
    println!("{line}");
    eprintln!("{line}");
    std::process::ExitCode::from(255)
}
