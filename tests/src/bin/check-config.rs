//! `make check-config [CONFIG=path ...]`: checks that an Envoy configuration's routes and the
//! edgegate filters agree on policies (see `gateway_tests::policy_check`). Prints each finding
//! with the route's line and exits 1 when there is any; 2 when a file cannot be read.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Check that every route names its edgegate policies and every policy is used")]
struct Args {
    /// Envoy configurations (templates with {{ ... }} placeholders are fine).
    #[arg(default_value = "envoy/gateway.yaml")]
    configs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut failed = false;
    for path in &args.configs {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("check-config: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        match gateway_tests::policy_check::check(&text) {
            Ok(findings) if findings.is_empty() => {
                println!(
                    "check-config: {}: every route names its policies",
                    path.display()
                );
            }
            Ok(findings) => {
                failed = true;
                for f in findings {
                    let sep = if f.line.is_some() { ":" } else { ": " };
                    println!("{}{sep}{f}", path.display());
                }
            }
            Err(e) => {
                eprintln!("check-config: {}: {e:#}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
