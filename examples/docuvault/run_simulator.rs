//! Runs the tiny Docuvault simulator by hand (see README.md):
//! `cargo run -p scopable-docuvault --example docuvault-sim [TOKEN]`. It prints its base URL,
//! writes the matching Scopable CSV files to the temporary directory, logs each request, and
//! runs until interrupted.

// Forcing failures (`fail_next`) is for the tests only.
#[allow(dead_code)]
#[path = "simulator.rs"]
mod simulator;

use std::time::Duration;

fn main() -> std::io::Result<()> {
    let token = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docuvault-demo-token".to_string());
    let sim = simulator::Simulator::start(&token)?;
    let dir = std::env::temp_dir();
    let clients = dir.join("docuvault-clients.csv");
    let configurations = dir.join("docuvault-configurations.csv");
    std::fs::write(&clients, simulator::CLIENTS_CSV)?;
    std::fs::write(&configurations, simulator::CONFIGURATIONS_CSV)?;
    println!("Docuvault simulator: {} (token {token})", sim.base_url());
    println!("Scopable records: {}", clients.display());
    println!("                  {}", configurations.display());
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for request in sim.requests().iter().skip(shown) {
            let bearer = request.authorization.is_some();
            println!(
                "{} {}?{} (bearer token: {bearer})",
                request.method, request.path, request.query
            );
            shown += 1;
        }
    }
}
