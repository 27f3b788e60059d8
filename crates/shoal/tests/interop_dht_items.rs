//! BEP 44 items in the DHT against libtorrent on loopback (127.0.6.1–9, ports
//! 19601–19609): a `shoal dht` node stores what libtorrent puts, `shoal dht get` reads it,
//! `shoal dht put` stores items libtorrent reads, and both sign versions of one mutable
//! item with the same key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Helpers after [`LT_DHT_NODE`]: waiting for an alert, and an item's value as text.
const LT_HELPERS: &str = r#"
def wait_for(kind, pred=lambda a: True, secs=20, fatal=True):
    end = time.time() + secs
    while time.time() < end:
        for a in s.pop_alerts():
            if isinstance(a, kind) and pred(a):
                return a
        time.sleep(0.05)
    if fatal:
        print('TIMEOUT', kind.__name__, flush=True)
        sys.exit(1)

def text(item):
    # The bindings give the item as a dict with its 'value' (and key, signature, ...).
    v = item['value'] if isinstance(item, dict) else item
    return v.decode() if isinstance(v, bytes) else str(v)
"#;

/// Waits for its bootstrap (libtorrent puts only to nodes in its table, not to the
/// bootstrap router), then puts an immutable string and a mutable one (secret key derived from the 32-byte seed
/// argv[4] the way libtorrent's `ed25519_create_keypair` does, public key argv[5], salt
/// argv[6]); prints what `dht_put_alert` reports.
const LT_PUT: &str = r#"
wait_for(lt.dht_bootstrap_alert, secs=10)
seed, pk, salt = bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5]), sys.argv[6].encode()
h = bytearray(hashlib.sha512(seed).digest())
h[0] &= 248; h[31] &= 63; h[31] |= 64
print('STARTED', flush=True)
target = s.dht_put_immutable_item('made by libtorrent')
a = wait_for(lt.dht_put_alert, lambda a: a.target == target)
print('IMM', str(target), a.num_success, flush=True)
s.dht_put_mutable_item(bytes(h), pk, b'libtorrent v1', salt)
a = wait_for(lt.dht_put_alert, lambda a: bytes(a.public_key) == pk)
print('MUT', a.seq, a.num_success, flush=True)
# Stays a live DHT node for the rest of the test (killed by it; at most 90 s).
end = time.time() + 90
while time.time() < end:
    s.pop_alerts()
    time.sleep(0.1)
"#;

/// Gets the immutable item argv[4] and the mutable item of public key argv[5] under salt
/// argv[6]: the first version found, not waiting for the lookup to finish (libtorrent
/// keeps the shoal put clients, which have exited, in its table, and would wait for
/// them to time out).
const LT_GET: &str = r#"
# Its bootstrap ends only once the exited nodes time out; 3 s fill its table enough.
wait_for(lt.dht_bootstrap_alert, secs=3, fatal=False)
target, pk, salt = lt.sha1_hash(bytes.fromhex(sys.argv[4])), bytes.fromhex(sys.argv[5]), sys.argv[6].encode()
s.dht_get_immutable_item(target)
a = wait_for(lt.dht_immutable_item_alert, lambda a: a.target == target)
print('IMM', text(a.item), flush=True)
s.dht_get_mutable_item(pk, salt)
a = wait_for(lt.dht_mutable_item_alert, lambda a: bytes(a.key) == pk and a.seq > 0)
print('MUT', a.seq, text(a.item), flush=True)
"#;

fn libtorrent_cmd(script: &str, ip: &str, port: &str, args: &[&str]) -> Command {
    lt_dht_node(&format!("{LT_HELPERS}\n{script}"), ip, port, BOOT, args)
}

fn libtorrent(script: &str, ip: &str, port: &str, args: &[&str]) -> Vec<String> {
    let (out, _) = run_with_timeout(
        &mut libtorrent_cmd(script, ip, port, args),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "libtorrent: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

const BOOT: &str = "127.0.6.1:19601";

/// `shoal dht get|put …` from its own address, bootstrapped to the shoal node.
fn shoal_dht(args: &[&str], ip: &str, state: &Path) -> serde_json::Value {
    let listen = format!("{ip}:0");
    let mut cmd = shoal();
    cmd.arg("dht")
        .args(args)
        .args(["--bootstrap", BOOT, "--listen", &listen, "--json"])
        .args(["--timeout", "30", "--state", path_str(state)]);
    serde_json::from_str(&run_ok(&mut cmd)).expect("one JSON object")
}

#[test]
fn items_travel_both_ways_between_shoal_and_libtorrent() {
    let dir = tempdir();
    let mut node = shoal();
    node.args(["dht", "--listen", BOOT, "--interval", "1", "--json"])
        .args(["--state", path_str(&dir.path().join("node.state"))]);
    let (_node, stats) = start_and_watch(node, "dht_stats", Duration::from_secs(10));

    let key_file = dir.path().join("key");
    let public = run_ok(shoal().args(["dht", "keygen", path_str(&key_file)]));
    let public = public.trim();
    let seed = std::fs::read_to_string(&key_file).unwrap();
    let seed = seed.trim();
    let salt = "shoal-interop";

    // libtorrent puts; the shoal node stores both items and shoal reads them.
    let (_putter, lines) = start_and_watch(
        libtorrent_cmd(LT_PUT, "127.0.6.2", "19602", &[seed, public, salt]),
        "STARTED",
        Duration::from_secs(20),
    );
    let immutable = lines.recv_timeout(Duration::from_secs(30)).expect("IMM");
    let imm: Vec<&str> = immutable.split(' ').collect();
    assert!(imm[0] == "IMM" && imm[2] != "0", "{immutable}");
    let libtorrent_target = imm[1];
    let mutable = lines.recv_timeout(Duration::from_secs(30)).expect("MUT");
    assert!(mutable.starts_with("MUT 1 "), "{mutable}");
    assert!(!mutable.ends_with(" 0"), "{mutable}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stats
            .recv_timeout(left)
            .expect("the shoal node did not store both items");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON stats");
        if v["items"].as_u64() >= Some(2) {
            break;
        }
    }
    let got = shoal_dht(
        &["get", libtorrent_target],
        "127.0.6.3",
        &dir.path().join("c3"),
    );
    assert_eq!(got["value"], "made by libtorrent");
    let got = shoal_dht(
        &["get", "--key", public, "--salt", salt],
        "127.0.6.4",
        &dir.path().join("c4"),
    );
    assert_eq!(
        (got["value"].as_str(), got["seq"].as_i64()),
        (Some("libtorrent v1"), Some(1))
    );

    // shoal puts an immutable item, and version 2 of the mutable one signed with the same
    // key in libtorrent's 64-byte form (written by hand from the seed, as libtorrent does).
    let put = shoal_dht(
        &["put", "made by shoal"],
        "127.0.6.5",
        &dir.path().join("c5"),
    );
    assert!(put["stored"].as_u64().unwrap() >= 1, "{put}");
    let target = put["target"].as_str().unwrap().to_owned();
    let expanded = python(
        "import hashlib, sys\nh = bytearray(hashlib.sha512(bytes.fromhex(sys.argv[1])).digest())\nh[0] &= 248; h[31] &= 63; h[31] |= 64\nprint(h.hex())",
        &[seed],
    );
    let lt_key = dir.path().join("lt-key");
    std::fs::write(&lt_key, expanded.trim()).unwrap();
    let put = shoal_dht(
        &[
            "put",
            "shoal v2",
            "--key-file",
            path_str(&lt_key),
            "--salt",
            salt,
        ],
        "127.0.6.6",
        &dir.path().join("c6"),
    );
    assert_eq!(put["key"].as_str(), Some(public), "{put}");
    assert_eq!(put["seq"].as_i64(), Some(2), "{put}");
    assert!(put["stored"].as_u64().unwrap() >= 1, "{put}");

    // libtorrent reads both.
    let got = libtorrent(LT_GET, "127.0.6.7", "19607", &[&target, public, salt]);
    assert_eq!(got, vec!["IMM made by shoal", "MUT 2 shoal v2"]);
}

/// What `shoal dht get|put|keygen` refuse, each with one clear line and exit code 1, and
/// exit code 3 when no node has the item asked for.
#[test]
fn item_commands_refuse_bad_input_and_report_what_is_missing() {
    let dir = tempdir();
    let fails = |args: &[&str], needle: &str| {
        let (out, _) = run_with_timeout(shoal().args(args), Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    let no_net = [
        "--listen",
        "127.0.6.20:0",
        "--bootstrap",
        "127.0.6.21:19621",
    ];
    let big = "x".repeat(1000);
    fails(
        &[&["dht", "put", &big][..], &no_net].concat(),
        "at most 1000",
    );
    fails(
        &[&["dht", "put", "li1e", "--bencoded"][..], &no_net].concat(),
        "not one complete bencoded value",
    );
    fails(
        &[&["dht", "get", "not-a-hash"][..], &no_net].concat(),
        "not an item target",
    );
    fails(
        &[&["dht", "get", "--key", "abcd"][..], &no_net].concat(),
        "64 hex digits",
    );
    let missing = dir.path().join("missing");
    fails(
        &[
            &["dht", "put", "v", "--key-file", path_str(&missing)][..],
            &no_net,
        ]
        .concat(),
        "cannot read",
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "abcd\n").unwrap();
    fails(
        &[
            &["dht", "put", "v", "--key-file", path_str(&short)][..],
            &no_net,
        ]
        .concat(),
        "not 2",
    );
    let key = dir.path().join("key");
    run_ok(shoal().args(["dht", "keygen", path_str(&key)]));
    fails(&["dht", "keygen", path_str(&key)], "cannot create");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A node that holds nothing: exit code 3 and a line that says so.
    let boot = "127.0.6.10:19610";
    let mut node = shoal();
    node.args(["dht", "--listen", boot, "--interval", "1", "--json"])
        .args(["--state", path_str(&dir.path().join("node.state"))]);
    let (_node, _) = start_and_watch(node, "dht_stats", Duration::from_secs(10));
    let (out, _) = run_with_timeout(
        shoal().args(["dht", "get", &"ab".repeat(20)]).args([
            "--bootstrap",
            boot,
            "--listen",
            "127.0.6.11:0",
            "--state",
            path_str(&dir.path().join("c.state")),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node had that item"));
}
