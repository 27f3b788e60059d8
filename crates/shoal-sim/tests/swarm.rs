//! End-to-end simulator scenarios: a small flash crowd completes near the bound and
//! replays byte for byte; corrupt peers are banned and honest ones never.

use std::process::Command;

use shoal_sim::{run, Scenario};

fn small_swarm(seed: u64) -> Scenario {
    Scenario {
        peers: 100,
        file_size: 8 << 20,
        piece_size: 64 << 10,
        super_seed: true,
        rng_seed: seed,
        ..Scenario::default()
    }
}

#[test]
fn hundred_peers_complete_near_the_bound_and_replay_exactly() {
    let scenario = small_swarm(11);
    let report = run(&scenario).expect("valid scenario");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 100, "{text}");
    let ratio = report.ratio_to_bound.expect("everyone completed");
    assert!(ratio <= RATIO_LIMIT, "{text}");
    assert_eq!(report.honest_peers_banned, 0);
    assert_eq!(report.wasted_corrupt_bytes, 0);
    let again = run(&scenario).expect("valid scenario");
    assert_eq!(text, again.to_text(&scenario), "same seed, same run");
}

/// What the 100-peer, 8 MiB flash crowd must achieve (T / T_min). A small file makes the
/// start-up (connections, first pieces) weigh more than in the 64 MiB benchmark.
const RATIO_LIMIT: f64 = 1.8;

#[test]
fn another_seed_gives_another_run() {
    let scenario = |seed| Scenario {
        peers: 30,
        file_size: 2 << 20,
        rng_seed: seed,
        ..Scenario::default()
    };
    let a = run(&scenario(3)).expect("valid");
    let b = run(&scenario(4)).expect("valid");
    assert_ne!(a.to_text(&scenario(3)), b.to_text(&scenario(3)));
}

#[test]
fn binary_output_is_byte_identical_and_ends_with_the_ratio() {
    let args = [
        "swarm",
        "--peers",
        "30",
        "--file-size",
        "4MiB",
        "--piece-size",
        "256KiB",
        "--seed-up",
        "1MiB",
        "--peer-up",
        "512KiB",
        "--peer-down",
        "4MiB",
        "--latency",
        "30",
        "--loss",
        "0.005",
        "--churn",
        "10%",
        "--bad-peers",
        "2",
        "--seed",
        "9",
    ];
    let run_once = || {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let first = run_once();
    assert_eq!(first, run_once());
    let last = first.lines().last().expect("output");
    assert!(
        last.starts_with("ratio_to_bound=") && last.len() == "ratio_to_bound=1.234".len(),
        "{first}"
    );
    assert!(first.contains("hash_check: sha1"), "{first}");
    let json = Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
        .args(args)
        .arg("--json")
        .output()
        .expect("runs");
    let text = String::from_utf8(json.stdout).expect("utf-8");
    let report: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("json line")).expect("json");
    assert_eq!(report["peers"], 30);
    assert_eq!(text.lines().last(), Some(last));
}

#[test]
fn corrupt_peers_are_banned_and_honest_peers_never() {
    let scenario = Scenario {
        peers: 40,
        bad_peers: 4,
        file_size: 4 << 20,
        rng_seed: 5,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 36, "{text}");
    assert_eq!(report.bad_peers_banned, 4, "{text}");
    assert_eq!(report.honest_peers_banned, 0, "{text}");
    assert!(report.wasted_corrupt_bytes > 0, "{text}");
}

#[test]
fn without_the_hash_check_corruption_is_accepted_and_reported() {
    let scenario = Scenario {
        peers: 20,
        bad_peers: 2,
        file_size: 2 << 20,
        rng_seed: 6,
        hash_check: shoal_sim::content::HashCheck::Off,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid");
    let text = report.to_text(&scenario);
    assert!(text.contains("hash_check: OFF"), "{text}");
    assert_eq!(report.ban_events, 0, "{text}");
    assert!(report.corrupt_pieces_accepted > 0, "{text}");
}

#[test]
fn churn_and_corrupt_peers_every_honest_peer_completes_none_banned() {
    let scenario = Scenario {
        peers: 60,
        bad_peers: 3,
        churn: 0.1,
        file_size: 4 << 20,
        rng_seed: 8,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 57, "{text}");
    assert_eq!(report.honest_peers_banned, 0, "{text}");
    assert_eq!(report.bad_peers_banned, 3, "{text}");
}

#[test]
fn peers_finish_after_the_seed_leaves_once_everything_is_out() {
    // The super-seed sends each piece once in about F / u_seed = 4 s; it leaves at 8 s.
    let scenario = Scenario {
        peers: 30,
        file_size: 4 << 20,
        super_seed: true,
        seed_leaves_at: Some(8.0),
        rng_seed: 2,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 30, "{text}");
    assert!(report.seed_upload_copies < 2.1, "{text}");
}

/// `shoal-sim dht` runs the DHT node code under simulation: lookups find announced peers
/// despite churn, and the same seed prints the same bytes.
#[test]
fn dht_subcommand_finds_peers_and_replays_exactly() {
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
            .args(["dht", "--nodes", "200", "--churn", "50%", "--seed", "3"])
            .args(["--announces", "10", "--lookups", "40"])
            .output()
            .expect("run shoal-sim");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("40/40 lookups found the peer"), "{first}");
    assert_eq!(first, run(), "not deterministic");
}

#[test]
fn the_timeline_accounts_for_the_run_without_changing_it() {
    let plain = Scenario {
        peers: 40,
        file_size: 4 << 20,
        piece_size: 64 << 10,
        rng_seed: 21,
        ..Scenario::default()
    };
    let traced = Scenario {
        timeline: Some(2.0),
        ..plain.clone()
    };
    let without = run(&plain).expect("valid");
    let with = run(&traced).expect("valid");
    let text = with.to_text(&traced);
    assert!(without.timeline.is_empty());
    let rest: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("timeline:"))
        .collect();
    assert_eq!(
        rest.join("\n") + "\n",
        without.to_text(&plain),
        "recording a timeline changes nothing else"
    );
    let rows = &with.timeline;
    let end = with.swarm_completion_s.expect("everyone completed");
    assert_eq!(rows.len(), (end / 2.0) as usize + 1, "{text}");
    // One seed: every piece leaves it once as a first copy, and the rest are repeats.
    let pieces = (plain.file_size / u64::from(plain.piece_size)) as f64;
    let new: f64 = rows.iter().map(|r| r.seed_new_pieces).sum();
    let repeat: f64 = rows.iter().map(|r| r.seed_repeat_pieces).sum();
    assert!((new - pieces).abs() < 1e-9, "{new} new pieces of {pieces}");
    let copies = with.seed_upload_copies * pieces;
    assert!((new + repeat - copies).abs() < 1e-6, "{text}");
    for row in rows {
        let idle = row.idle_unwanted
            + row.idle_choking
            + row.idle_in_transit
            + row.idle_elsewhere
            + row.idle_unasked
            + row.idle_window_full;
        assert!(
            row.leecher_busy <= 1.0 + 1e-9 && idle <= 1.0 + 1e-9,
            "{text}"
        );
    }
    assert!(
        rows[0].idle_unwanted > 0.5,
        "nobody has anything to trade at first: {text}"
    );
    // Later, uplinks idle because the peers they unchoke get their pieces from others,
    // or while a request is on its way.
    assert!(rows.iter().any(|r| r.idle_elsewhere > 0.0), "{text}");
    assert!(rows.iter().any(|r| r.idle_in_transit > 0.0), "{text}");
    assert_eq!(rows.last().expect("rows").completed, 40);
    assert!(rows.windows(2).all(|w| w[0].completed <= w[1].completed));
}

/// One leecher fetches `file_size` from `seeds` seeds over links of `latency_ms` each way,
/// every end uploading `up` and the leecher downloading `down`; it must finish within
/// `max_ratio` of the bound.
fn assert_lone_leecher_within(
    seeds: u32,
    file_size: u64,
    (up, down): (u64, u64),
    latency_ms: f64,
    max_ratio: f64,
) {
    let scenario = Scenario {
        peers: 1,
        seeds,
        file_size,
        piece_size: 256 << 10,
        seed_up: up,
        peer_up: up,
        peer_down: down,
        latency_ms,
        rng_seed: 1,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid scenario");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 1, "{text}");
    let ratio = report.ratio_to_bound.expect("completed");
    assert!(ratio < max_ratio, "{text}");
}

/// A lone leecher on a fast link must not be held to the shallow request queue that a
/// crowd sharing an uploader wants: until its rate is measured the queue grows with every
/// block (slow start). 64 MiB at 100 MiB/s on a 1 ms link took 1.51 s with a fixed
/// 256 KiB/s guess, 0.68 s with slow start; the bound is 0.64 s.
#[test]
fn a_lone_fast_leecher_is_not_held_to_the_first_queue_depth() {
    assert_lone_leecher_within(1, 64 << 20, (100 << 20, 100 << 20), 1.0, 1.15);
}

/// A lone leecher 300 ms (one way) from its seed: the round trip is longer than the
/// standard request window, so a queue sized by the window alone would shrink to its floor
/// (8 blocks a round trip, 213 KiB/s of the seed's 512 KiB/s). 16 MiB took 3.79 times
/// the bound before the window's probes found that a longer one gets more, 1.28 with
/// them, and 1.19 now that the queue covers 1.25 round trips from the start.
#[test]
fn a_lone_leecher_on_a_long_link_fills_it() {
    assert_lone_leecher_within(1, 16 << 20, (512 << 10, 8 << 20), 300.0, 1.25);
}

/// The same from six seeds at once. More than four peers sending to us stops probing
/// (a deeper queue would take share of an uploader that others need), but not for seeds
/// when several of them send. Without that exemption this took 3.03 times the bound (1.30
/// with it, 1.22 with the round trip covered); six Transmission seeds, which send every
/// 500 ms, were held the same way.
#[test]
fn a_lone_leecher_fills_long_links_from_several_seeds() {
    assert_lone_leecher_within(6, 64 << 20, (512 << 10, 8 << 20), 300.0, 1.25);
}

/// One fast seed (4 MiB/s) and six leechers uploading 512 KiB/s, 300 ms apart one way:
/// each leecher has more than four peers sending to it, but the seed, whose round trip
/// is longer than the standard window, delivers all its queue lets through, so its
/// window is probed all the same (a seed in a crowd that shares its upload delivers less
/// than that). 1.95 of the bound without the exemption, 1.82 with it, 1.70 with the
/// queue covering 1.25 round trips besides.
#[test]
fn a_seed_held_back_by_our_queue_is_probed_among_many_sources() {
    let scenario = Scenario {
        peers: 6,
        file_size: 64 << 20,
        piece_size: 256 << 10,
        seed_up: 4 << 20,
        peer_up: 512 << 10,
        peer_down: 8 << 20,
        latency_ms: 300.0,
        rng_seed: 1,
        ..Scenario::default()
    };
    let report = run(&scenario).expect("valid scenario");
    let text = report.to_text(&scenario);
    assert_eq!(report.completed, 6, "{text}");
    assert!(report.ratio_to_bound.expect("completed") < 1.75, "{text}");
}
