//! `itglue-sim`: runs the IT Glue API simulator on 127.0.0.1 until killed, or writes the
//! Scopable CSV files that match one of its data sets.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use itglue_sim::{
    SimConfig, Simulator, generated_dataset, generated_scopable_csv, sample_dataset,
    sample_scopable_csv,
};

const USAGE: &str = "usage: itglue-sim [--port N] --key KEY [--key-eu KEY] [--key-au KEY] \
[--latency-ms N] [--auth-style json|forbidden] [--dataset sample|generated:ORGSxCONFIGS]
       itglue-sim [--dataset sample|generated:ORGSxCONFIGS] --write-csv DIR";

/// Which data set to serve or write.
#[derive(Clone, Copy)]
enum Data {
    Sample,
    Generated { orgs: usize, configs: usize },
}

struct Args {
    port: u16,
    keys: Vec<(&'static str, String)>,
    latency: Duration,
    forbidden: bool,
    data: Data,
    write_csv: Option<PathBuf>,
}

fn parse_data(value: &str) -> Result<Data, String> {
    if value == "sample" {
        return Ok(Data::Sample);
    }
    let shape = value
        .strip_prefix("generated:")
        .and_then(|s| s.split_once('x'))
        .and_then(|(o, c)| Some((o.parse().ok()?, c.parse().ok()?)));
    match shape {
        Some((orgs, configs)) => Ok(Data::Generated { orgs, configs }),
        None => Err(format!(
            "--dataset must be `sample` or `generated:ORGSxCONFIGS`, not `{value}`"
        )),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        keys: Vec::new(),
        latency: Duration::ZERO,
        forbidden: false,
        data: Data::Sample,
        write_csv: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                args.port = v.parse().map_err(|_| format!("--port: not a port: {v}"))?;
            }
            "--key" => args.keys.push(("us", value()?)),
            "--key-eu" => args.keys.push(("eu", value()?)),
            "--key-au" => args.keys.push(("au", value()?)),
            "--latency-ms" => {
                let v = value()?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("--latency-ms: not a number: {v}"))?;
                args.latency = Duration::from_millis(ms);
            }
            "--auth-style" => {
                args.forbidden = match value()?.as_str() {
                    "json" => false,
                    "forbidden" => true,
                    other => {
                        return Err(format!(
                            "--auth-style must be json or forbidden, not {other}"
                        ));
                    }
                }
            }
            "--dataset" => args.data = parse_data(&value()?)?,
            "--write-csv" => args.write_csv = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if args.write_csv.is_none() && !args.keys.iter().any(|(r, _)| *r == "us") {
        return Err("--key is required to serve".to_string());
    }
    if args.keys.iter().any(|(_, k)| k.trim().is_empty()) {
        return Err("keys must not be empty".to_string());
    }
    Ok(args)
}

fn write_csv(dir: &std::path::Path, data: Data) -> std::io::Result<()> {
    let (clients, configs) = match data {
        Data::Sample => sample_scopable_csv(),
        Data::Generated { orgs, configs } => generated_scopable_csv(orgs, configs),
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("clients.csv"), clients)?;
    std::fs::write(dir.join("configurations.csv"), configs)?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("itglue-sim: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    if let Some(dir) = &args.write_csv {
        return match write_csv(dir, args.data) {
            Ok(()) => {
                eprintln!(
                    "itglue-sim: wrote clients.csv and configurations.csv to {}",
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "itglue-sim: cannot write CSV files to {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }

    let dataset = match args.data {
        Data::Sample => sample_dataset(),
        Data::Generated { orgs, configs } => generated_dataset(orgs, configs),
    };
    let config = SimConfig {
        keys: args
            .keys
            .into_iter()
            .map(|(r, k)| (r.to_string(), k))
            .collect(),
        auth_error_style: if args.forbidden {
            itglue_sim::AuthStyle::PlainForbidden
        } else {
            itglue_sim::AuthStyle::JsonApi401
        },
        latency: args.latency,
        dataset,
        port: args.port,
        tls: None,
        keep_alive: false,
        connect_delay: Duration::ZERO,
    };
    let sim = match Simulator::start(config) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("itglue-sim: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", sim.base_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    loop {
        std::thread::park();
    }
}
