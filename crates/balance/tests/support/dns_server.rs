//! A real authoritative DNS server for tests: hickory-server on 127.0.0.1 (a free UDP port, and
//! TCP on the same port), serving an in-memory zone `test.` whose records the test changes
//! while it runs. A thin request handler in front of the zone counts the queries and can
//! answer SERVFAIL; the server can be stopped and started again on the same port.
//!
//! Shared by `crates/balance/tests/dns.rs` (the `DnsDiscover` stream on its own) and the
//! workspace's `tests/fleet.rs` (the balancer following a fleet of real backends), each of
//! which includes it with `#[path = ...] mod dns_server;`. Not every test uses every helper.

#![allow(dead_code)]

use hickory_server::authority::{AuthorityObject, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, RecordSet, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answer from the zone.
    Answer,
    /// Answer SERVFAIL to everything.
    ServFail,
}

#[derive(Default)]
struct Control {
    mode: Mutex<Option<Mode>>,
    /// Every query received: name and type.
    queries: Mutex<Vec<(String, RecordType)>>,
}

struct Handler {
    catalog: Catalog,
    control: Arc<Control>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            self.control
                .queries
                .lock()
                .unwrap()
                .push((info.query.name().to_string(), info.query.query_type()));
        }
        let mode = self.control.mode.lock().unwrap().unwrap_or(Mode::Answer);
        match mode {
            Mode::Answer => self.catalog.handle_request(request, response).await,
            Mode::ServFail => {
                let message = MessageResponseBuilder::from_message_request(request)
                    .error_msg(request.header(), ResponseCode::ServFail);
                match response.send_response(message).await {
                    Ok(info) => info,
                    Err(_) => ResponseInfo::from(*request.header()),
                }
            }
        }
    }
}

/// An authoritative server for the zone `test.` on 127.0.0.1.
pub(crate) struct DnsServer {
    /// Where it listens (UDP and TCP).
    pub(crate) addr: SocketAddr,
    authority: Arc<InMemoryAuthority>,
    control: Arc<Control>,
    server: Option<ServerFuture<Handler>>,
}

/// A domain name (panics on a malformed one: test input).
pub(crate) fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

impl DnsServer {
    /// Starts a server on a port free for both UDP and TCP, with an empty zone.
    pub(crate) async fn start() -> DnsServer {
        let origin = name("test.");
        let mut soa = RecordSet::with_ttl(origin.clone(), RecordType::SOA, 60);
        soa.add_rdata(RData::SOA(SOA::new(
            name("ns.test."),
            name("admin.test."),
            1,
            60,
            60,
            60,
            0,
        )));
        let mut records = BTreeMap::new();
        records.insert(RrKey::new(LowerName::new(&origin), RecordType::SOA), soa);
        let authority =
            Arc::new(InMemoryAuthority::new(origin, records, ZoneType::Primary, false).unwrap());
        // Find a port free for both UDP and TCP.
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let mut server = DnsServer {
                addr,
                authority,
                control: Arc::default(),
                server: None,
            };
            server.serve(udp, tcp);
            return server;
        }
        panic!("no free port for UDP and TCP");
    }

    fn serve(&mut self, udp: UdpSocket, tcp: TcpListener) {
        let mut catalog = Catalog::new();
        let zone: Arc<dyn AuthorityObject> = self.authority.clone();
        catalog.upsert(LowerName::new(&name("test.")), vec![zone]);
        let mut server = ServerFuture::new(Handler {
            catalog,
            control: self.control.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(2));
        self.server = Some(server);
    }

    /// Stops answering: the sockets are closed (queries are refused or time out). The zone is
    /// kept, and may be changed while the server is stopped.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown_gracefully().await.unwrap();
        }
    }

    /// Serves again on the same address.
    pub(crate) async fn restart(&mut self) {
        let udp = UdpSocket::bind(self.addr).await.unwrap();
        let tcp = TcpListener::bind(self.addr).await.unwrap();
        self.serve(udp, tcp);
    }

    /// Whether it is serving (not stopped).
    pub(crate) fn is_serving(&self) -> bool {
        self.server.is_some()
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.control.mode.lock().unwrap() = Some(mode);
    }

    /// Queries received for `owner` of type `rtype`.
    pub(crate) fn queries(&self, owner: &str, rtype: RecordType) -> usize {
        self.control
            .queries
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == owner && *t == rtype)
            .count()
    }

    /// Replaces the records of `owner` of `rtype` (none: removes them).
    pub(crate) async fn set(&self, owner: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        let owner = name(owner);
        let key = RrKey::new(LowerName::new(&owner), rtype);
        let mut records = self.authority.records_mut().await;
        if data.is_empty() {
            records.remove(&key);
        } else {
            let mut set = RecordSet::with_ttl(owner, rtype, ttl);
            for d in data {
                set.add_rdata(d);
            }
            records.insert(key, Arc::new(set));
        }
    }

    /// Sets the A records of `owner` to 127.0.0.`n` for each `n`.
    pub(crate) async fn set_a(&self, owner: &str, ttl: u32, hosts: &[u8]) {
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|n| Ipv4Addr::new(127, 0, 0, *n)).collect();
        self.set_ips(owner, ttl, &ips).await;
    }

    /// Sets the A records of `owner` to `ips`.
    pub(crate) async fn set_ips(&self, owner: &str, ttl: u32, ips: &[Ipv4Addr]) {
        let data = ips.iter().map(|ip| RData::A(A(*ip))).collect();
        self.set(owner, RecordType::A, ttl, data).await;
    }

    /// Removes every record of `owner`: the name no longer exists (NXDOMAIN).
    pub(crate) async fn remove_name(&self, owner: &str) {
        let owner = LowerName::new(&name(owner));
        self.authority
            .records_mut()
            .await
            .retain(|key, _| key.name != owner);
    }
}
