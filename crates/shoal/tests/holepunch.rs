//! Hole punching (BEP 55) through real firewalls: three network namespaces on one bridge,
//! a relay R and two peers A and B, each of A and B behind a stateful firewall that
//! refuses every connection it did not start (TCP is reset, UDP dropped). A and B can
//! reach R, not each other; only B has the data, and R downloads at 2 KB/s, so A finishes
//! only if A and B punch through to each other over uTP after R introduces them.
//!
//! Every role of shoal is played against libtorrent: shoal dialling and dialled through
//! a libtorrent relay, and shoal relaying between two libtorrents. A third test has shoal
//! in every role with its default settings (TCP first): R's peer exchange tells A and B
//! of each other at once, their dials cross, and each side's outgoing uTP packets open
//! its own firewall to the other's (a rendezvous follows if they do not).
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); `.ci/deps` installs them (see
//! `common/netns.rs`).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

/// The relay's and the two peers' hosts on one bridge.
struct Net {
    ns: Namespaces,
    subnet: u8,
}

const HOSTS: [&str; 3] = ["r", "a", "b"];

impl Net {
    /// A bridge in a namespace of its own, and R, A and B on it at 10.77.`subnet`.1, .2
    /// and .3, with A's and B's firewalls up.
    fn new(subnet: u8) -> Net {
        let mut ns = Namespaces::new(&format!("h{subnet}"));
        ns.add("hub");
        ns.exec("hub", &["ip", "link", "add", "br0", "type", "bridge"]);
        ns.exec("hub", &["ip", "link", "set", "br0", "up"]);
        let net_ip = |i: usize| format!("10.77.{subnet}.{}", i + 1);
        for (i, host) in HOSTS.iter().enumerate() {
            ns.add(host);
            let port = format!("p{host}");
            ns.link((host, "eth0"), ("hub", &port));
            ns.exec("hub", &["ip", "link", "set", &port, "master", "br0"]);
            let addr = format!("{}/24", net_ip(i));
            ns.exec(host, &["ip", "addr", "add", &addr, "dev", "eth0"]);
        }
        // Connections the host starts, and their answers, pass; nothing else comes in.
        for host in ["a", "b"] {
            ns.nft(
                host,
                "table inet fw {
                    chain input {
                        type filter hook input priority 0; policy drop;
                        ct state established,related accept
                        iif lo accept
                        meta l4proto tcp reject with tcp reset
                    }
                }",
            );
        }
        Net { ns, subnet }
    }

    /// R's, A's or B's address, by index into [`HOSTS`].
    fn ip(&self, index: usize) -> String {
        format!("10.77.{}.{}", self.subnet, index + 1)
    }

    fn command(&self, host: &str, program: &str) -> Command {
        self.ns.command(host, program)
    }
}

/// A libtorrent peer that speaks TCP and uTP (its defaults) and connects to the relay:
/// argv is the torrent, the save folder, our IP and port, the relay's IP and port, a
/// download limit in bytes per second (0: none), and `nopex` to take no peer exchange.
/// Prints READY, then `PEER ip` for each peer it is connected to every 0.2 s, `HP ...`
/// for each hole punching message in its peer log, and DONE once it has every piece.
const LT_PEER: &str = r#"
import libtorrent as lt, sys, time
torrent, save, ip, port, rip, rport, limit, opts = sys.argv[1:9]
s = lt.session({
    'listen_interfaces': '%s:%s' % (ip, port), 'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True, 'peer_connect_timeout': 3,
    'alert_mask': lt.alert.category_t.peer_log_notification,
})
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
if int(limit):
    h.set_download_limit(int(limit))
if 'nopex' in opts:
    h.set_flags(lt.torrent_flags.disable_pex)
print('READY', flush=True)
deadline = time.time() + 60
last_connect = 0
while time.time() < deadline:
    if time.time() - last_connect > 5:
        h.connect_peer((rip, int(rport)))
        last_connect = time.time()
    for a in s.pop_alerts():
        if 'HOLEPUNCH' in a.message():
            print('HP', a.message(), flush=True)
    for p in h.get_peer_info():
        print('PEER', p.ip[0], flush=True)
    if h.status().is_seeding:
        print('DONE', flush=True)
    time.sleep(0.2)
"#;

fn lt_peer(
    net: &Net,
    host: usize,
    (torrent, save): (&Path, &Path),
    limit: u32,
    opts: &str,
) -> Command {
    let mut cmd = net.command(HOSTS[host], "/usr/bin/python3");
    cmd.arg("-c").arg(LT_PEER).args([
        path_str(torrent),
        path_str(save),
        &net.ip(host),
        &format!("{}", 6881 + host),
        &net.ip(0),
        "6881",
        &limit.to_string(),
        opts,
    ]);
    cmd
}

/// `shoal <command> ...` in `host`'s namespace, listening at the host's IP and port
/// 6881 + its index, with no DHT or tracker, JSON out.
fn shoal_in(net: &Net, host: usize, command: &str, args: &[&str], state: &Path) -> Command {
    let mut cmd = net.command(HOSTS[host], env!("CARGO_BIN_EXE_shoal"));
    let listen = format!("{}:{}", net.ip(host), 6881 + host);
    cmd.arg(command)
        .args(args)
        .args(["--json", "--listen", &listen, "--no-dht", "--no-tracker"])
        .args(["--state-dir", path_str(state)]);
    cmd
}

/// `shoal get` as the relay R, downloading at 2 KB/s so that it has nothing to pass on
/// in the test's time; returns it once started, with its output lines.
fn shoal_relay(net: &Net, torrent: &Path, dir: &Path) -> (Guard, Receiver<String>) {
    let out = dir.join("relay");
    let args = [
        path_str(torrent),
        "-o",
        path_str(&out),
        "--max-down",
        "2000",
    ];
    let relay = shoal_in(net, 0, "get", &args, &dir.join("r-state"));
    start_and_watch(relay, "\"started\"", Duration::from_secs(30))
}

/// The relay's address, `--peer` style.
fn relay(net: &Net) -> String {
    format!("{}:6881", net.ip(0))
}

/// A's download must come from B: the events name B as a peer.
fn assert_connected_to(events: &[serde_json::Value], ip: &str) {
    let peers: Vec<&str> = events_named(events, "peer_connected")
        .iter()
        .map(|e| e["addr"].as_str().unwrap())
        .collect();
    assert!(
        peers.iter().any(|a| a.starts_with(&format!("{ip}:"))),
        "{peers:?}"
    );
}

#[test]
fn shoal_punches_through_to_a_firewalled_shoal_seed_via_a_libtorrent_relay() {
    let net = Net::new(1);
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 11, "256K");
    let relay_dir = dir.path().join("relay");
    let (_r, r_lines) = start_and_watch(
        lt_peer(&net, 0, (&torrent, &relay_dir), 2000, ""),
        "READY",
        Duration::from_secs(30),
    );
    // libtorrent finds a peer a relay can introduce by the address its connection comes
    // from, and names A by its connection's, so both use uTP to it: `--utp prefer`.
    let relay_addr = relay(&net);
    let seed_args = [
        path_str(&torrent),
        path_str(&src),
        "--peer",
        &relay_addr,
        "--utp",
        "prefer",
    ];
    let seed = shoal_in(&net, 2, "seed", &seed_args, &dir.path().join("b-state"));
    let _b = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    wait_lines(
        &r_lines,
        &[&format!("PEER {}", net.ip(2))],
        Duration::from_secs(20),
    );
    // libtorrent sends its first peer exchange at once and the next a minute later:
    // once the first has gone, B does not hear of A, so it cannot dial A on its own (which
    // would open its firewall to A without any introduction).
    std::thread::sleep(Duration::from_secs(2));
    let out = dir.path().join("out");
    let get_args = [path_str(&torrent), "-o", path_str(&out), "--no-seed"];
    let mut get = shoal_in(&net, 1, "get", &get_args, &dir.path().join("a-state"));
    let started = Instant::now();
    let events = json_events(get.args(["--peer", &relay_addr, "--utp", "prefer"]));
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert_connected_to(&events, &net.ip(2));
    eprintln!("punched through and downloaded in {:?}", started.elapsed());
    // A asked libtorrent for the introduction, in words libtorrent understood.
    let asked = format!("rendezvous to: {}", net.ip(2));
    wait_lines(&r_lines, &[&asked], Duration::from_secs(5));
}

#[test]
fn a_shoal_relay_introduces_two_firewalled_libtorrents() {
    let net = Net::new(2);
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 5, "256K");
    let (_r, r_lines) = shoal_relay(&net, &torrent, dir.path());
    let (_b, _) = start_and_watch(
        lt_peer(&net, 2, (&torrent, &src), 0, "nopex"),
        "READY",
        Duration::from_secs(30),
    );
    wait_lines(
        &r_lines,
        &[&format!("\"addr\":\"{}:", net.ip(2))],
        Duration::from_secs(20),
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let (mut a, a_lines) = start_and_watch(
        lt_peer(&net, 1, (&torrent, &out), 0, ""),
        "READY",
        Duration::from_secs(30),
    );
    let seen = wait_lines(&a_lines, &["DONE"], Duration::from_secs(45));
    a.0.kill().ok();
    // A asked shoal to introduce it to B, and shoal told it to dial B.
    let hole_punching: Vec<&String> = seen.iter().filter(|l| l.starts_with("HP")).collect();
    let said = |what: String| hole_punching.iter().any(|l| l.contains(&what));
    assert!(
        said(format!("rendezvous to: {}", net.ip(2))) && said(format!("connect to: {}", net.ip(2))),
        "{hole_punching:#?}"
    );
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    eprintln!("introduced and downloaded in {:?}", started.elapsed());
}

#[test]
fn firewalled_shoal_peers_with_default_settings_reach_each_other() {
    let net = Net::new(3);
    let dir = tempdir();
    let (src, torrent) = make_single(dir.path(), 3 * 1024 * 1024 + 3, "256K");
    let (_r, r_lines) = shoal_relay(&net, &torrent, dir.path());
    let relay_addr = relay(&net);
    let seed_args = [path_str(&torrent), path_str(&src), "--peer", &relay_addr];
    let seed = shoal_in(&net, 2, "seed", &seed_args, &dir.path().join("b-state"));
    let _b = start_and_wait(seed, "\"started\"", Duration::from_secs(30));
    wait_lines(
        &r_lines,
        &[&format!("\"addr\":\"{}:", net.ip(2))],
        Duration::from_secs(20),
    );
    let out = dir.path().join("out");
    let get_args = [path_str(&torrent), "-o", path_str(&out), "--no-seed"];
    let mut get = shoal_in(&net, 1, "get", &get_args, &dir.path().join("a-state"));
    let started = Instant::now();
    let events = json_events(get.args(["--peer", &relay_addr]));
    eprintln!("punched through and downloaded in {:?}", started.elapsed());
    same_files(&src.join("payload.bin"), &out.join("payload.bin"));
    assert_connected_to(&events, &net.ip(2));
}
