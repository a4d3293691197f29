//! Debian's dnsmasq as a test's name server, a server that is not ours: a child process on
//! 127.0.0.1 (a port free for both UDP and TCP), with no configuration file, no upstream and
//! no `/etc/hosts`, answering from the hosts files of a temporary directory (`--hostsdir`,
//! which it re-reads on inotify when a file changes) with a TTL of 1 s (`--local-ttl=1`).
//!
//! A test changes the answer by rewriting a hosts file (written beside the directory, then
//! renamed into it, so dnsmasq never reads half a file), and makes an outage by killing the
//! process and starting it again on the same port (it reads the directory when it starts).
//!
//! dnsmasq comes from Debian's `dnsmasq-base` package, which `.ci/run` installs when it is
//! missing: [`binary_or_skip`] fails the test when the `CI` environment variable is set and
//! dnsmasq is missing (CI never skips it silently), and elsewhere prints why the test checks
//! nothing.
//!
//! Shared by `crates/balance/tests/dns_dnsmasq.rs` (the `DnsDiscover` stream on its own) and
//! the workspace's `tests/fleet.rs` (the balancer following a fleet of real backends), each of
//! which includes it with `#[path = ...] mod dnsmasq;`. Not every test uses every helper.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The dnsmasq binary: on `PATH`, or in `/usr/sbin` or `/sbin` (where Debian puts it, often
/// off a user's `PATH`).
pub(crate) fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("dnsmasq"))
        .find(|p| p.is_file())
}

/// The dnsmasq binary, or `None` (after printing why `test` checks nothing) when it is not
/// installed. Panics when it is not installed and the `CI` environment variable is set.
pub(crate) fn binary_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(binary) = binary() {
        return Some(binary);
    }
    if std::env::var_os("CI").is_some() {
        panic!("dnsmasq is not installed, and CI must run {test}: apt-get install dnsmasq-base");
    }
    eprintln!("dnsmasq is not installed (apt-get install dnsmasq-base): not running {test}");
    None
}

/// A dnsmasq child process, killed when dropped, and the directory it reads hosts from.
pub(crate) struct Dnsmasq {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Tells apart the directories of the servers one test process starts.
static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// A port on 127.0.0.1 free for both UDP and TCP (dnsmasq listens on both).
fn free_port() -> u16 {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for UDP and TCP");
}

impl Dnsmasq {
    /// A server not started yet, with an empty hosts directory.
    pub(crate) fn new(binary: PathBuf) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!(
            "bulwark-dnsmasq-{}-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::SeqCst),
            std::thread::current()
                .name()
                .unwrap_or("test")
                .replace("::", "-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hosts")).unwrap();
        Dnsmasq {
            binary,
            dir,
            port: free_port(),
            child: None,
        }
    }

    /// Where it listens (UDP and TCP), running or not.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the process (again, after [`kill`](Self::kill): on the same port, reading the
    /// hosts directory as it is now). It takes a moment to listen: see
    /// [`wait_serving`](Self::wait_serving).
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "dnsmasq is already running");
        let hostsdir = self.dir.join("hosts");
        let child = Command::new(&self.binary)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local-ttl=1",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--hostsdir={}", hostsdir.display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        self.child = Some(child);
    }

    /// Kills the process (and reaps it): queries are refused until it is started again.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running (started, not killed).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Replaces the A records of `name` with 127.0.0.`n` for each `n`.
    pub(crate) fn set_a(&self, name: &str, hosts: &[u8]) {
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|n| Ipv4Addr::new(127, 0, 0, *n)).collect();
        self.set_ips(name, &ips);
    }

    /// Replaces the A records of `name` with `ips` (none: dnsmasq no longer knows the name).
    /// The name's hosts file is written beside the watched directory, then renamed into it,
    /// so dnsmasq never reads half a file. dnsmasq applies it when it sees the change (or
    /// when it starts, if it is not running): see [`wait_serving`](Self::wait_serving).
    pub(crate) fn set_ips(&self, name: &str, ips: &[Ipv4Addr]) {
        let name = name.trim_end_matches('.');
        let text: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
        let staged = self.dir.join(format!("{name}.staged"));
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, self.dir.join("hosts").join(name)).unwrap();
    }

    /// Asks dnsmasq for the A records of `name`, once (UDP, waiting up to `wait`): `None` when
    /// no answer came, the addresses otherwise (none for an error or an empty answer).
    pub(crate) async fn query_a(&self, name: &str, wait: Duration) -> Option<BTreeSet<Ipv4Addr>> {
        static IDS: AtomicUsize = AtomicUsize::new(1);
        let id = IDS.fetch_add(1, Ordering::SeqCst) as u16;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
        socket.connect(self.addr()).await.ok()?;
        socket.send(&query(id, name)).await.ok()?;
        let mut buf = [0u8; 1500];
        let read = async {
            loop {
                // A refused port (not listening yet) is an error: no answer.
                let n = socket.recv(&mut buf).await.ok()?;
                if let Some(ips) = parse_a(id, &buf[..n]) {
                    return Some(ips);
                }
            }
        };
        tokio::time::timeout(wait, read).await.ok().flatten()
    }

    /// Waits until dnsmasq answers exactly `ips` for `name` (it is listening, and has read
    /// the hosts files); panics after `within`.
    pub(crate) async fn wait_serving(&self, name: &str, ips: &[Ipv4Addr], within: Duration) {
        let expected: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
        let serving = async {
            loop {
                if self
                    .query_a(name, Duration::from_millis(100))
                    .await
                    .as_ref()
                    == Some(&expected)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(within, serving)
            .await
            .unwrap_or_else(|_| panic!("dnsmasq did not answer {expected:?} for {name} in time"));
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A DNS query (recursion desired) for the A records of `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no other records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).expect("a label of at most 63 bytes"));
        q.extend_from_slice(label.as_bytes());
    }
    // The root, type A, class IN.
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The A records of the reply to query `id` (none for an error), or `None` when `reply` is
/// not that (or is malformed).
fn parse_a(id: u16, reply: &[u8]) -> Option<BTreeSet<Ipv4Addr>> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*reply.get(at)?, *reply.get(at + 1)?]))
    };
    if reply.len() < 12 || u16_at(0)? != id || reply[2] & 0x80 == 0 {
        return None;
    }
    let mut ips = BTreeSet::new();
    if reply[3] & 0x0f != 0 {
        return Some(ips);
    }
    let skip_name = |at: &mut usize| -> Option<()> {
        loop {
            let len = *reply.get(*at)?;
            if len & 0xc0 == 0xc0 {
                *at += 2;
                return Some(());
            }
            *at += 1 + usize::from(len);
            if len == 0 {
                return Some(());
            }
        }
    };
    let mut at = 12;
    for _ in 0..u16_at(4)? {
        skip_name(&mut at)?;
        at += 4;
    }
    for _ in 0..u16_at(6)? {
        skip_name(&mut at)?;
        let (rtype, len) = (u16_at(at)?, usize::from(u16_at(at + 8)?));
        at += 10;
        let data = reply.get(at..at + len)?;
        if rtype == 1 && len == 4 {
            ips.insert(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += len;
    }
    Some(ips)
}
