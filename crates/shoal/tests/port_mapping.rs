//! Port mapping against a real router: miniupnpd in a network namespace that NATs a
//! home network (192.168.77.0/24) onto an outside one (11.88.0.0/24, which miniupnpd
//! takes for public), with its nftables tables for the forwardings it adds, speaking
//! NAT-PMP (RFC 6886) alone in one test and UPnP IGD alone in the other. A `shoal seed`
//! at home asks it to forward its port; a `shoal get` outside downloads through the
//! router's address over TCP and over uTP (the UDP forwarding), and the forwardings are
//! gone once the seed exits. `--no-port-map` asks for none. When the router forwards
//! another port (6881 is another host's), the seed announces that one to a tracker.
//!
//! Needs root, iproute2, nftables and miniupnpd (`.ci/deps` installs them).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const ROUTER_RULES: &str = "table inet filter {
    chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd;
        oifname \"wan0\" masquerade;
    }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}";

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

/// The router's forwardings, as nftables lists them.
fn forwardings(ns: &Namespaces) -> String {
    let mut list = ns.command("gw", "nft");
    run_ok(list.args(["list", "chain", "inet", "filter", "prerouting_miniupnpd"]))
}

#[test]
fn a_seed_behind_a_nat_pmp_router_is_reached_through_the_port_it_mapped() {
    behind_a_router("natpmp", 7200);
}

#[test]
fn a_seed_behind_a_upnp_router_is_reached_through_the_port_it_mapped() {
    behind_a_router("upnp", 3600);
}

#[test]
fn a_seed_given_another_port_over_nat_pmp_announces_that_one() {
    given_another_port("natpmp", "nc");
}

#[test]
fn a_seed_given_another_port_over_upnp_announces_that_one() {
    given_another_port("upnp", "uc");
}

/// Another host at home (192.168.77.3) has the router forward port 6881 to it first, so
/// our seed's request for 6881 conflicts: NAT-PMP grants another port, and UPnP refuses
/// (718) until we ask for a random one, as libtorrent does. The seed then announces the
/// port it was given to a tracker outside, and a `shoal get` outside, which has only the
/// tracker to go by, reaches it through that port; and it tells the peers it dials that
/// port too. (At 6881 they would reach the other host, which seeds another torrent.)
fn given_another_port(method: &str, tag: &str) {
    let router = router(method, tag);
    let (ns, dir) = (&router.ns, &router.dir);
    let shoal_bin = env!("CARGO_BIN_EXE_shoal");
    let mut tracker = ns.command("net", "sh");
    tracker.arg("-c").arg(format!(
        "exec {shoal_bin} tracker --http 11.88.0.2:6969 --interval 10 2>&1"
    ));
    let _tracker = start_and_wait(tracker, "HTTP on", Duration::from_secs(10));

    let (other_src, other_torrent) = make_single(&dir.path().join("other"), 65_537, "64K");
    let mut other = ns.command("home", shoal_bin);
    other
        .args([
            "seed",
            path_str(&other_torrent),
            path_str(&other_src),
            "--json",
        ])
        .args(["--listen", "192.168.77.3:6881", "--no-dht", "--no-tracker"])
        .args(["--state-dir", path_str(&dir.path().join("other-state"))]);
    let (_other, other_lines) = spawn_watched(other);
    let first = r#""external_port":6881,"internal_port":6881"#;
    wait_lines(&other_lines, &[first], Duration::from_secs(30));

    let (src, torrent) = make_single(dir.path(), 2 * 1024 * 1024 + 3, "256K");
    let mut meta = shoal_core::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    meta.trackers = vec![vec!["http://11.88.0.2:6969/announce".to_owned()]];
    std::fs::write(&torrent, meta.to_bytes()).unwrap();
    // Outside, with neither tracker nor DHT: it hears of the seed only when the seed
    // dials it, and of its port only from the seed's handshake.
    let outside = |name: &str, port: u16, extra: &[&str]| {
        let mut get = router.get_outside(&torrent, name, port, &["--no-tracker"]);
        get.args(extra);
        get
    };
    let mut seed = ns.command("home", shoal_bin);
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args([
            "--listen",
            "192.168.77.2:6881",
            "--no-dht",
            "--peer",
            "11.88.0.2:7001",
        ])
        .args(["--state-dir", path_str(&dir.path().join("seed-state"))]);
    let (_seed, lines) = spawn_watched(seed);
    let tcp = format!(r#""method":"{method}","protocol":"tcp""#);
    let seen = wait_lines(&lines, &[&tcp], Duration::from_secs(30));
    let mapped: serde_json::Value =
        serde_json::from_str(seen.iter().find(|l| l.contains(&tcp)).unwrap()).unwrap();
    assert_eq!(mapped["event"], "port_mapped", "{mapped}");
    assert_eq!(mapped["internal_port"], 6881, "{mapped}");
    let external = mapped["external_port"].as_u64().unwrap();
    assert_ne!(external, 6881, "{mapped}");
    // The first outside peer: dialled (again, 5 s after the seed's first try found no
    // one) once the seed knows its port. Slowed down, so that it still trades with the
    // seed when the second comes.
    let (_first, first_lines) = spawn_watched(outside("first", 7001, &["--max-down", "256K"]));
    wait_lines(&first_lines, &["11.88.0.1:"], Duration::from_secs(30));
    let forwarded = forwardings(ns);
    assert!(
        // 0x6: TCP.
        forwarded.contains(&format!(
            "0x6 th dport {external} dnat ip to 192.168.77.2:6881"
        )),
        "{forwarded}"
    );

    let events = json_events(&mut router.get_outside(&torrent, "out", 7000, &["--no-seed"]));
    same_files(
        &src.join("payload.bin"),
        &dir.path().join("out/payload.bin"),
    );
    let connected = events_named(&events, "peer_connected");
    let reached = format!("11.88.0.1:{external}");
    assert!(
        connected.iter().any(|e| e["addr"] == reached.as_str()),
        "{reached}: {connected:?}"
    );

    // The seed dialled the first outside peer and told it that port (BEP 10 `p`), which
    // passes it on by peer exchange: a second one that knows only the first reaches the
    // seed there. (Slowed down, so that the exchange comes before the end; and the seed,
    // which hears of it from the first, cannot dial it, so it must dial the seed.)
    ns.nft(
        "net",
        "table inet second {
            chain input {
                type filter hook input priority 0; policy accept;
                ip saddr 11.88.0.1 meta l4proto { tcp, udp } th dport 7002 drop
            }
        }",
    );
    let extra = [
        "--no-seed",
        "--peer",
        "11.88.0.2:7001",
        "--max-down",
        "256K",
    ];
    let events = json_events(&mut outside("second", 7002, &extra));
    let connected = events_named(&events, "peer_connected");
    assert!(
        connected.iter().any(|e| e["addr"] == reached.as_str()),
        "{reached}: {connected:?}"
    );
}

/// A home network behind miniupnpd speaking `method` alone, as the module documentation
/// says; `tag` names its namespaces.
struct Router {
    ns: Namespaces,
    dir: tempfile::TempDir,
    _daemon: Guard,
}

impl Router {
    /// `shoal get --json` of `torrent` outside the NAT, without the DHT, on
    /// 11.88.0.2:`port`, into and with state beside `name` in the test folder.
    fn get_outside(&self, torrent: &Path, name: &str, port: u16, extra: &[&str]) -> Command {
        let dir = self.dir.path();
        let mut get = self.ns.command("net", env!("CARGO_BIN_EXE_shoal"));
        get.args(["get", path_str(torrent), "--json", "--no-dht"])
            .args(["-o", path_str(&dir.join(name))])
            .args(["--listen", &format!("11.88.0.2:{port}")])
            .args(["--state-dir", path_str(&dir.join(format!("{name}-state")))])
            .args(extra);
        get
    }
}

fn router(method: &str, tag: &str) -> Router {
    require("miniupnpd");
    let mut ns = Namespaces::new(tag);
    for host in ["gw", "home", "net"] {
        ns.add(host);
    }
    ns.link(("gw", "wan0"), ("net", "eth0"));
    ns.link(("gw", "lan0"), ("home", "eth0"));
    ns.exec("gw", &["ip", "addr", "add", "11.88.0.1/24", "dev", "wan0"]);
    ns.exec(
        "gw",
        &["ip", "addr", "add", "192.168.77.1/24", "dev", "lan0"],
    );
    ns.exec("net", &["ip", "addr", "add", "11.88.0.2/24", "dev", "eth0"]);
    for ip in ["192.168.77.2/24", "192.168.77.3/24"] {
        ns.exec("home", &["ip", "addr", "add", ip, "dev", "eth0"]);
    }
    ns.exec(
        "home",
        &["ip", "route", "add", "default", "via", "192.168.77.1"],
    );
    ns.exec("gw", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns.nft("gw", ROUTER_RULES);

    let dir = tempdir();
    let config = dir.path().join("miniupnpd.conf");
    std::fs::write(
        &config,
        format!(
            "ext_ifname=wan0\nlistening_ip=lan0\nport=0\nenable_natpmp={}\nenable_upnp={}\n\
         secure_mode=yes\nsystem_uptime=yes\nupnp_table_name=filter\nupnp_nat_table_name=filter\n\
         upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n\
         upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
         uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
         allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            yes_no(method == "natpmp"),
            yes_no(method == "upnp"),
        ),
    )
    .expect("write miniupnpd.conf");
    let pid_file = dir.path().join("miniupnpd.pid");
    let mut daemon = ns.command("gw", "sh");
    daemon.arg("-c").arg(format!(
        "exec miniupnpd -d -f {} -P {} 2>&1",
        path_str(&config),
        path_str(&pid_file)
    ));
    let ready = if method == "natpmp" {
        "Listening for NAT-PMP"
    } else {
        "HTTP listening on port"
    };
    let daemon = start_and_wait(daemon, ready, Duration::from_secs(20));
    assert!(!forwardings(&ns).contains("dnat"), "nothing forwarded yet");
    Router {
        ns,
        dir,
        _daemon: daemon,
    }
}

/// The scenario of the module documentation, with a router that speaks `method` alone;
/// shoal asks for `lifetime` seconds that way.
fn behind_a_router(method: &str, lifetime: u32) {
    let router = router(method, &method[..2]);
    let (ns, dir) = (&router.ns, &router.dir);
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 17, "256K");
    let mut seed = ns.command("home", env!("CARGO_BIN_EXE_shoal"));
    seed.args(["seed", path_str(&torrent), path_str(&src), "--json"])
        .args(["--listen", "192.168.77.2:6881", "--no-dht", "--no-tracker"])
        .args(["--state-dir", path_str(&dir.path().join("seed-state"))]);
    // The router may answer before the engine has started: every line counts.
    let (mut seed, lines) = spawn_watched(seed);
    let mapped = |protocol: &str| {
        format!(
            r#""external_port":6881,"internal_port":6881,"lifetime":{lifetime},"method":"{method}","protocol":"{protocol}""#
        )
    };
    let (tcp, udp) = (mapped("tcp"), mapped("udp"));
    wait_lines(
        &lines,
        &["\"started\"", &tcp, &udp],
        Duration::from_secs(30),
    );
    let forwarded = forwardings(ns);
    assert_eq!(
        forwarded.matches("dnat ip to 192.168.77.2:6881").count(),
        2,
        "{forwarded}"
    );

    // From outside, to the router's address: over TCP, then uTP alone.
    for (name, utp) in [("tcp", "off"), ("utp", "only")] {
        let extra = [
            "--no-seed",
            "--no-tracker",
            "--peer",
            "11.88.0.1:6881",
            "--utp",
            utp,
        ];
        let events = json_events(&mut router.get_outside(&torrent, name, 7000, &extra));
        same_files(
            &src.join("payload.bin"),
            &dir.path().join(name).join("payload.bin"),
        );
        let connected = events_named(&events, "peer_connected");
        assert_eq!(connected[0]["transport"], name, "{connected:?}");
    }

    // Asked to stop, the seed removes what it asked for.
    let pid = seed.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    seed.wait_exit(Duration::from_secs(10), "the seed exits on SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while forwardings(ns).contains("dnat") {
        assert!(Instant::now() < deadline, "{}", forwardings(ns));
        std::thread::sleep(Duration::from_millis(100));
    }

    // With --no-port-map nothing is asked for.
    let mut quiet = ns.command("home", env!("CARGO_BIN_EXE_shoal"));
    quiet
        .args([
            "seed",
            path_str(&torrent),
            path_str(&src),
            "--json",
            "--no-port-map",
        ])
        .args(["--listen", "192.168.77.2:6882", "--no-dht", "--no-tracker"])
        .args(["--state-dir", path_str(&dir.path().join("quiet-state"))]);
    let _quiet = start_and_wait(quiet, "\"started\"", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!forwardings(ns).contains("dnat"), "{}", forwardings(ns));
}
