//! Network namespaces for tests that need more than loopback: hosts behind firewalls or
//! a NAT router. Each test makes its own, under a prefix unique to the test process, and
//! they are deleted (with their interfaces) when the [`Namespaces`] value drops. Needs
//! root, `ip` (iproute2) and `nft` (nftables); `.ci/deps` installs them.

use std::process::Command;

use super::*;

pub struct Namespaces {
    prefix: String,
    hosts: Vec<String>,
}

impl Namespaces {
    /// `tag` tells this test's namespaces from another's (a few characters: interface
    /// names are built from it and may not pass 15).
    pub fn new(tag: &str) -> Self {
        require("ip");
        require("nft");
        let uid = run_ok(Command::new("id").arg("-u"));
        assert_eq!(
            uid.trim(),
            "0",
            "this test makes network namespaces: run it as root"
        );
        Namespaces {
            prefix: format!("s{}{tag}", std::process::id() % 100_000),
            hosts: Vec::new(),
        }
    }

    /// The namespace of `host`, made now, with its loopback up.
    pub fn add(&mut self, host: &str) {
        run_ok(Command::new("ip").args(["netns", "add", &self.ns(host)]));
        self.hosts.push(host.to_owned());
        self.exec(host, &["ip", "link", "set", "lo", "up"]);
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// A cable: an interface named `a_if` in `a` and one named `b_if` in `b`, both up.
    pub fn link(&self, (a, a_if): (&str, &str), (b, b_if): (&str, &str)) {
        let (tmp_a, tmp_b) = (
            format!("{}{a}{b}", self.prefix),
            format!("{}{b}{a}", self.prefix),
        );
        run_ok(Command::new("ip").args([
            "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ]));
        for (host, tmp, name) in [(a, &tmp_a, a_if), (b, &tmp_b, b_if)] {
            run_ok(Command::new("ip").args(["link", "set", tmp, "netns", &self.ns(host)]));
            self.exec(host, &["ip", "link", "set", tmp, "name", name]);
            self.exec(host, &["ip", "link", "set", name, "up"]);
        }
    }

    /// Runs a command in `host` to success.
    pub fn exec(&self, host: &str, args: &[&str]) {
        run_ok(self.command(host, args[0]).args(&args[1..]));
    }

    /// `program`, to be run in `host`'s namespace.
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host), program]);
        cmd
    }

    /// Loads an nftables ruleset into `host`.
    pub fn nft(&self, host: &str, rules: &str) {
        let path = std::env::temp_dir().join(format!("{}-{host}.nft", self.prefix));
        std::fs::write(&path, rules).expect("write nft rules");
        self.exec(host, &["nft", "-f", path_str(&path)]);
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .status();
        }
    }
}
