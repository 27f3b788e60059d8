//! Runs the DHT simulation (`shoal_dht::sim`) and prints its report.
//!
//! `cargo run --release -p shoal-dht --example dht_sim -- --nodes 100000 --churn 0.5 --seed 1`
//! Other options: `--announces N`, `--lookups N`, `--loss P`, `--join-secs S`,
//! `--reannounce true|false`.

use shoal_dht::sim::{run, SimParams};

fn main() {
    let mut params = SimParams::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            eprintln!("dht_sim: {pair:?}: every option takes a value");
            std::process::exit(2);
        };
        let bad = || -> ! {
            eprintln!("dht_sim: {flag} {value}: not understood");
            std::process::exit(2)
        };
        match flag.as_str() {
            "--nodes" => params.nodes = value.parse().unwrap_or_else(|_| bad()),
            "--churn" => params.churn = value.parse().unwrap_or_else(|_| bad()),
            "--seed" => params.seed = value.parse().unwrap_or_else(|_| bad()),
            "--announces" => params.announces = value.parse().unwrap_or_else(|_| bad()),
            "--lookups" => params.lookups = value.parse().unwrap_or_else(|_| bad()),
            "--loss" => params.loss = value.parse().unwrap_or_else(|_| bad()),
            "--join-secs" => params.join_secs = value.parse().unwrap_or_else(|_| bad()),
            "--reannounce" => params.reannounce = value.parse().unwrap_or_else(|_| bad()),
            _ => bad(),
        }
    }
    println!("seed {}", params.seed);
    let r = run(&params);
    println!(
        "nodes {} churn {:.2}: {}/{} lookups found the peer ({:.1} %), rounds median {} p90 {}, \
         queries per lookup mean {:.1} median {}, first peer after {} ms (median), \
         {} packets, mean table {:.0} nodes, {} s virtual, {:.1} s wall; \
         {} announces lost every storing node in the churn (re-announce: {})",
        r.nodes,
        r.churn,
        r.found,
        r.lookups,
        100.0 * r.success_rate(),
        r.median_rounds,
        r.p90_rounds,
        r.mean_queries,
        r.median_queries,
        r.median_ms_to_peer,
        r.packets,
        r.mean_table,
        r.virtual_secs,
        r.wall_secs,
        r.lost_announces,
        params.reannounce
    );
}
