//! A mock book store with chaos controls, served over real HTTP on a loopback port.
//!
//! Routes of each store:
//!
//! * `GET /books`: 200, a JSON array of every book it holds (each with `"store"`).
//! * `GET /books/{title}`: 200 with the book (with `"store"`), 404 `{"error"}` if absent.
//! * `POST /books`: body `{"title","author","isbn","price"}`; 201 with the stored book, also
//!   when the very same book is already stored (idempotent); 409 if the title exists with other
//!   fields; 400 for malformed JSON or a missing or empty field; 413 for bodies over 64 KiB.
//! * `GET /health`: 200 `{"healthy":true}` or 503 `{"healthy":false}`.
//! * `POST /health/flip`: toggles health, 200 `{"healthy":BOOL}`.
//! * `PUT /fault`: sets the [`Fault`] mode; 200 with the mode in force, 400 if invalid, 413
//!   for a body over 1 KiB.
//!
//! The chaos controls (`PUT /fault`, `POST /health/flip`) answer 403 when the store listens on
//! an address that is not loopback, unless it was started with `allow_chaos` (the demo's
//! stores always listen on loopback). A store holds at most [`MAX_BOOKS`] books and
//! [`MAX_HELD_BYTES`] bytes of text; a `POST /books` past that answers 507. Connections are
//! bounded as [`Limits`] says; a body must arrive within its `body_read_timeout` (408).
//!
//! The error, flaky and slow modes touch only the book routes (`/books...`). The down mode
//! closes the listener and drops every open connection until a non-down mode is set in process
//! with [`Store::set_fault`].
//!
//! Every 4xx and 5xx answer has the body `{"error": message}` (see [`error_response`]).

// The demo is a binary: this `pub` API is the contract between its modules, reachable or not
// from the crate root.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tower_bulwark::core::{RandomSource, SplitMix64};

use super::serve::{bounded_body, BodyBounds, Limits};

/// The largest request body a store (and [`json_body`]) accepts: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The largest `PUT /fault` body: 1 KiB (a fault is a few dozen bytes).
pub const FAULT_BODY_LIMIT: usize = 1024;

/// The most books a store holds (the catalogue included); a `POST /books` past it answers 507.
pub const MAX_BOOKS: usize = 10_000;

/// The most bytes of text (titles, authors, ISBNs) a store holds; a `POST /books` past it
/// answers 507.
pub const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// How long a store waits after answering `PUT /fault {"mode":"down"}` before going down, so
/// the 200 can reach the client before its connection is dropped.
pub const HTTP_DOWN_DELAY: Duration = Duration::from_millis(25);

/// A book, as stores hold it and the search service returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// The title; a store holds at most one book per title (exact, case-sensitive match).
    pub title: String,
    /// The author.
    pub author: String,
    /// The ISBN.
    pub isbn: String,
    /// The price.
    pub price: f64,
}

impl Book {
    fn new(title: &str, author: &str, isbn: &str, price: f64) -> Book {
        Book {
            title: title.to_owned(),
            author: author.to_owned(),
            isbn: isbn.to_owned(),
            price,
        }
    }

    /// Checks a book posted to a store: every text field non-blank, a finite, non-negative
    /// price. Err is the message for a 400.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("title", &self.title),
            ("author", &self.author),
            ("isbn", &self.isbn),
        ] {
            if value.trim().is_empty() {
                return Err(format!("field `{field}` must not be empty"));
            }
        }
        if !self.price.is_finite() || self.price < 0.0 {
            return Err("field `price` must be a non-negative number".to_owned());
        }
        Ok(())
    }
}

/// The seeded catalogue every store starts with: 24 real books, fixed and deterministic
/// (title, author, ISBN, price).
#[rustfmt::skip]
const CATALOGUE: [(&str, &str, &str, f64); 24] = [
    ("Dune", "Frank Herbert", "978-0441172719", 9.99),
    ("The Hobbit", "J. R. R. Tolkien", "978-0547928227", 11.49),
    ("Nineteen Eighty-Four", "George Orwell", "978-0451524935", 8.99),
    ("Brave New World", "Aldous Huxley", "978-0060850524", 10.99),
    ("Pride and Prejudice", "Jane Austen", "978-0141439518", 7.50),
    ("To Kill a Mockingbird", "Harper Lee", "978-0061120084", 9.49),
    ("The Great Gatsby", "F. Scott Fitzgerald", "978-0743273565", 10.00),
    ("Moby-Dick", "Herman Melville", "978-0142437247", 12.99),
    ("Frankenstein", "Mary Shelley", "978-0486282114", 4.50),
    ("Foundation", "Isaac Asimov", "978-0553293357", 8.99),
    ("Neuromancer", "William Gibson", "978-0441569595", 9.99),
    ("The Left Hand of Darkness", "Ursula K. Le Guin", "978-0441478125", 9.99),
    ("Fahrenheit 451", "Ray Bradbury", "978-1451673319", 8.99),
    ("Jane Eyre", "Charlotte Bronte", "978-0141441146", 7.99),
    ("Wuthering Heights", "Emily Bronte", "978-0141439556", 7.99),
    ("Crime and Punishment", "Fyodor Dostoevsky", "978-0143107637", 13.00),
    ("The Catcher in the Rye", "J. D. Salinger", "978-0316769488", 8.99),
    ("Snow Crash", "Neal Stephenson", "978-0553380958", 11.99),
    ("The Name of the Rose", "Umberto Eco", "978-0544176560", 14.99),
    ("One Hundred Years of Solitude", "Gabriel Garcia Marquez", "978-0060883287", 12.49),
    ("The Hitchhiker's Guide to the Galaxy", "Douglas Adams", "978-0345391803", 7.99),
    ("Hyperion", "Dan Simmons", "978-0553283686", 9.99),
    ("The Road", "Cormac McCarthy", "978-0307387899", 10.49),
    ("Beloved", "Toni Morrison", "978-1400033416", 11.00),
];

/// The seeded catalogue every store starts with, as books.
pub fn catalogue() -> Vec<Book> {
    CATALOGUE
        .iter()
        .map(|&(title, author, isbn, price)| Book::new(title, author, isbn, price))
        .collect()
}

fn default_status() -> u16 {
    503
}

/// A store's fault mode.
///
/// As JSON: `{"mode":"ok"}`, `{"mode":"error","status":503}`,
/// `{"mode":"flaky","error_rate":0.3,"status":503}`, `{"mode":"slow","delay_ms":30000}`,
/// `{"mode":"down"}`; `status` defaults to 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Fault {
    /// Normal service.
    Ok,
    /// Every book request answers `status` with a JSON error body.
    Error {
        /// The status of the failures (100..=599).
        #[serde(default = "default_status")]
        status: u16,
    },
    /// A share `error_rate` (0..=1) of book requests answers `status`, before anything is stored.
    Flaky {
        /// The share of book requests that fail.
        error_rate: f64,
        /// The status of the failures (100..=599).
        #[serde(default = "default_status")]
        status: u16,
    },
    /// Book requests answer after `delay_ms` milliseconds.
    Slow {
        /// The delay before a book request is handled.
        delay_ms: u64,
    },
    /// The store refuses connections and drops open ones.
    Down,
}

impl Fault {
    /// Parses and validates a `PUT /fault` body; Err is the message for a 400.
    pub fn parse(body: &[u8]) -> Result<Fault, String> {
        let fault: Fault =
            serde_json::from_slice(body).map_err(|err| format!("invalid fault: {err}"))?;
        fault.validate()?;
        Ok(fault)
    }

    /// Checks the ranges serde cannot: `status` in 100..=599, `error_rate` in 0..=1.
    pub fn validate(&self) -> Result<(), String> {
        let status = match self {
            Fault::Error { status } => Some(*status),
            Fault::Flaky { error_rate, status } => {
                if !(0.0..=1.0).contains(error_rate) {
                    return Err(format!("error_rate {error_rate} is outside 0..=1"));
                }
                Some(*status)
            }
            Fault::Ok | Fault::Slow { .. } | Fault::Down => None,
        };
        match status {
            Some(status) if !(100..=599).contains(&status) => {
                Err(format!("status {status} is outside 100..=599"))
            }
            _ => Ok(()),
        }
    }
}

/// The error answer every 4xx/5xx of a store uses: `status` with the body `{"error": message}`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

/// A request refused with a status and a message; answers as [`error_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status to answer.
    pub status: StatusCode,
    /// The message of the `{"error": message}` body.
    pub message: String,
}

impl ApiError {
    /// A refusal with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

impl From<BytesRejection> for ApiError {
    /// 413 for a body over the [`DefaultBodyLimit`], the rejection's own status otherwise.
    fn from(rejection: BytesRejection) -> ApiError {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is too large".to_owned()
        } else {
            rejection.body_text()
        };
        ApiError::new(status, message)
    }
}

/// Decodes a JSON request body taken as `Result<Bytes, BytesRejection>` (under a
/// [`DefaultBodyLimit`]): a body over the limit is a 413, malformed JSON or a wrong shape a 400.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body?;
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}")))
}

/// What a store holds; never locked across an `.await`.
#[derive(Debug)]
struct StoreState {
    books: Vec<Book>,
    index: HashMap<String, usize>,
    /// The bytes of text in `books`.
    held_bytes: usize,
    fault: Fault,
    healthy: bool,
}

fn text_bytes(book: &Book) -> usize {
    book.title.len() + book.author.len() + book.isbn.len()
}

/// What every clone of a store and its handlers share.
#[derive(Debug)]
struct Shared {
    name: String,
    addr: SocketAddr,
    state: Mutex<StoreState>,
    rng: SplitMix64,
    /// Whether `PUT /fault` and `POST /health/flip` answer (loopback, or allowed).
    chaos: bool,
    /// The bounds on each connection.
    limits: Limits,
    /// Book requests that reached the store (`/books...`), whatever it then answered.
    book_requests: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A command to the accept loop.
#[derive(Debug)]
enum Command {
    /// Make the listener match the fault in force (down: no listener and no connection;
    /// anything else: listening), then acknowledge.
    Sync(Option<oneshot::Sender<io::Result<()>>>),
    /// Stop for good, then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// The state of the HTTP handlers. It holds the control channel weakly, so that the accept loop
/// (which owns the router) ends once every [`Store`] is dropped.
#[derive(Clone, Debug)]
struct AppState {
    shared: Arc<Shared>,
    control: mpsc::WeakUnboundedSender<Command>,
}

/// A running store (cheap to clone; every clone controls the same store).
///
/// The accept loop ends when [`Store::shutdown`] is called or every clone is dropped.
#[derive(Clone, Debug)]
pub struct Store {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Command>,
}

impl Store {
    /// Starts a store named `name` on `addr` (port 0 picks a free one). `seed` seeds the flaky
    /// mode's randomness. Its chaos controls answer only on loopback; its connections have
    /// [`Limits::store`].
    pub async fn spawn(name: &str, addr: SocketAddr, seed: u64) -> io::Result<Store> {
        Store::spawn_with(name, addr, seed, false, Limits::store()).await
    }

    /// [`Store::spawn`], with the chaos controls answering on any address if `allow_chaos`,
    /// and the connections bounded by `limits`.
    pub async fn spawn_with(
        name: &str,
        addr: SocketAddr,
        seed: u64,
        allow_chaos: bool,
        limits: Limits,
    ) -> io::Result<Store> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let chaos = allow_chaos || addr.ip().to_canonical().is_loopback();
        let books = catalogue();
        let held_bytes = books.iter().map(text_bytes).sum();
        let index = books
            .iter()
            .enumerate()
            .map(|(i, book)| (book.title.clone(), i))
            .collect();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            addr,
            state: Mutex::new(StoreState {
                books,
                index,
                held_bytes,
                fault: Fault::Ok,
                healthy: true,
            }),
            rng: SplitMix64::new(seed),
            chaos,
            limits,
            book_requests: std::sync::atomic::AtomicU64::new(0),
        });
        let (control, commands) = mpsc::unbounded_channel();
        let router = router(AppState {
            shared: Arc::clone(&shared),
            control: control.downgrade(),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), router, listener, commands));
        Ok(Store { shared, control })
    }

    /// Book requests (`/books...`) that reached this store, whatever it answered: what the
    /// search service's `bookstore_requests_total` should count for it.
    pub fn book_requests(&self) -> u64 {
        self.shared
            .book_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store's name, as its books' `"store"` field gives it.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound address (the same across down and up).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT` (an unspecified bind address becomes
    /// loopback).
    pub fn url(&self) -> String {
        let mut addr = self.shared.addr;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}")
    }

    /// The fault mode in force.
    pub fn fault(&self) -> Fault {
        self.shared.lock().fault.clone()
    }

    /// Sets the fault mode; returns once it is in force. After `set_fault(Fault::Down)`
    /// returns, new connections are refused and open ones have been dropped. Any other mode
    /// brings a down store back up on the same address (so `Error`, `Flaky` and `Slow` can be
    /// set straight from down). Errs if the store was shut down or the address cannot be bound
    /// again (the mode is kept; a later call retries the bind).
    pub async fn set_fault(&self, fault: Fault) -> io::Result<()> {
        self.shared.lock().fault = fault;
        let (ack, done) = oneshot::channel();
        self.control
            .send(Command::Sync(Some(ack)))
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Whether `GET /health` reports healthy.
    pub fn healthy(&self) -> bool {
        self.shared.lock().healthy
    }

    /// Sets what `GET /health` reports.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.lock().healthy = healthy;
    }

    /// Toggles health; returns the new value.
    pub fn flip_health(&self) -> bool {
        flip(&self.shared)
    }

    /// The books the store holds now, in insertion order.
    pub fn books(&self) -> Vec<Book> {
        self.shared.lock().books.clone()
    }

    /// Stops the store for good (closes the listener, drops connections); idempotent.
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.control.send(Command::Shutdown(ack)).is_ok() {
            // Err: the loop had already ended.
            let _ = done.await;
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the store was shut down")
}

fn flip(shared: &Shared) -> bool {
    let mut state = shared.lock();
    state.healthy = !state.healthy;
    state.healthy
}

/// A listener on `addr` with `SO_REUSEADDR`, so a store can bind its port again right after
/// going down.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Accepts and serves connections, and carries out the commands, until shut down or every
/// [`Store`] is dropped.
async fn accept_loop(
    shared: Arc<Shared>,
    router: Router,
    listener: TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let http1 = Arc::new(shared.limits.http1());
    let max_connections = shared.limits.max_connections.max(1);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Sync(ack)) => {
                    let down = shared.lock().fault == Fault::Down;
                    let result = if down {
                        // Dropping the listener refuses new connections (and resets those
                        // waiting in its backlog); `shutdown` waits until every connection
                        // task is aborted and its socket dropped.
                        listener = None;
                        connections.shutdown().await;
                        Ok(())
                    } else if listener.is_none() {
                        bind(shared.addr).map(|bound| listener = Some(bound))
                    } else {
                        Ok(())
                    };
                    if let Some(ack) = ack {
                        let _ = ack.send(result);
                    }
                }
                Some(Command::Shutdown(ack)) => {
                    drop(listener.take());
                    connections.shutdown().await;
                    let _ = ack.send(());
                    return;
                }
                None => break,
            },
            // At most `max_connections` at once: the next waits in the backlog.
            accepted = accept(&listener), if connections.len() < max_connections => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    let http1 = Arc::clone(&http1);
                    connections.spawn(async move {
                        let connection = http1.serve_connection(TokioIo::new(stream), service);
                        if let Err(err) = connection.await {
                            tracing::debug!(error = %err, "store connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Usually per connection (reset before accept) or out of descriptors:
                    // pause briefly rather than spin.
                    tracing::debug!(error = %err, "store accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

fn router(state: AppState) -> Router {
    let within = state.shared.limits.body_read_timeout;
    let body = |limit| middleware::from_fn_with_state(BodyBounds { limit, within }, bounded_body);
    let books = Router::new()
        .route("/books", get(list_books).post(add_book))
        .route("/books/{title}", get(get_book))
        .route_layer(middleware::from_fn_with_state(state.clone(), fault_gate));
    Router::new()
        .route("/health", get(health))
        .route("/health/flip", post(flip_health))
        .route(
            "/fault",
            put(set_fault)
                .get(get_fault)
                .route_layer(body(FAULT_BODY_LIMIT))
                .route_layer(DefaultBodyLimit::max(FAULT_BODY_LIMIT)),
        )
        .merge(books)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(body(BODY_LIMIT))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A book with the name of the store holding it, as the book routes answer it.
#[derive(Serialize)]
struct StoredBook<'a> {
    title: &'a str,
    author: &'a str,
    isbn: &'a str,
    price: f64,
    store: &'a str,
}

fn stored<'a>(book: &'a Book, store: &'a str) -> StoredBook<'a> {
    StoredBook {
        title: &book.title,
        author: &book.author,
        isbn: &book.isbn,
        price: book.price,
        store,
    }
}

fn failure_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Applies the error, flaky and slow modes to the book routes.
async fn fault_gate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    app.shared
        .book_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let fault = app.shared.lock().fault.clone();
    let name = &app.shared.name;
    match fault {
        Fault::Ok => {}
        Fault::Error { status } => {
            return error_response(failure_status(status), format!("{name}: injected error"))
        }
        Fault::Flaky { error_rate, status } => {
            if app.shared.rng.next_f64() < error_rate {
                return error_response(
                    failure_status(status),
                    format!("{name}: injected flaky failure"),
                );
            }
        }
        Fault::Slow { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        Fault::Down => {
            // Only between the switch to down and the listener closing.
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name}: store is going down"),
            );
        }
    }
    next.run(request).await
}

async fn list_books(State(app): State<AppState>) -> Response {
    let name = app.shared.name.as_str();
    let state = app.shared.lock();
    let books: Vec<StoredBook<'_>> = state.books.iter().map(|b| stored(b, name)).collect();
    Json(books).into_response()
}

async fn get_book(
    State(app): State<AppState>,
    title: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(title) = match title {
        Ok(title) => title,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let name = app.shared.name.as_str();
    let state = app.shared.lock();
    match state.index.get(&title).and_then(|&i| state.books.get(i)) {
        Some(book) => Json(stored(book, name)).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("{name} has no book titled {title:?}"),
        ),
    }
}

async fn add_book(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let book: Book = match json_body(body) {
        Ok(book) => book,
        Err(err) => return err.into_response(),
    };
    if let Err(message) = book.validate() {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    let name = app.shared.name.as_str();
    let mut state = app.shared.lock();
    if let Some(existing) = state
        .index
        .get(&book.title)
        .and_then(|&i| state.books.get(i))
    {
        return if *existing == book {
            (StatusCode::CREATED, Json(stored(existing, name))).into_response()
        } else {
            error_response(
                StatusCode::CONFLICT,
                format!(
                    "{name} already holds a different book titled {:?}",
                    book.title
                ),
            )
        };
    }
    let bytes = text_bytes(&book);
    if state.books.len() >= MAX_BOOKS || state.held_bytes + bytes > MAX_HELD_BYTES {
        return error_response(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("{name} is full ({MAX_BOOKS} books or {MAX_HELD_BYTES} bytes of text)"),
        );
    }
    state.held_bytes += bytes;
    let position = state.books.len();
    state.index.insert(book.title.clone(), position);
    let response = (StatusCode::CREATED, Json(stored(&book, name))).into_response();
    state.books.push(book);
    response
}

#[derive(Serialize)]
struct Health {
    healthy: bool,
}

async fn health(State(app): State<AppState>) -> Response {
    let healthy = app.shared.lock().healthy;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Health { healthy })).into_response()
}

/// 403 for a chaos control of a store that listens beyond loopback without `allow_chaos`.
fn chaos_refused(shared: &Shared) -> Option<Response> {
    (!shared.chaos).then(|| {
        error_response(
            StatusCode::FORBIDDEN,
            format!(
                "chaos controls are off: {} listens on {}, not loopback (allow them with \
                 --allow-chaos)",
                shared.name, shared.addr
            ),
        )
    })
}

async fn flip_health(State(app): State<AppState>) -> Response {
    if let Some(refused) = chaos_refused(&app.shared) {
        return refused;
    }
    let healthy = flip(&app.shared);
    Json(Health { healthy }).into_response()
}

async fn get_fault(State(app): State<AppState>) -> Response {
    let fault = app.shared.lock().fault.clone();
    Json(fault).into_response()
}

/// `PUT /fault`. Down goes into force [`HTTP_DOWN_DELAY`] after the answer, so the 200 can
/// reach the client first (the answer may still race with the close).
async fn set_fault(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    if let Some(refused) = chaos_refused(&app.shared) {
        return refused;
    }
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let fault = match Fault::parse(&bytes) {
        Ok(fault) => fault,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    app.shared.lock().fault = fault.clone();
    if let Some(control) = app.control.upgrade() {
        if fault == Fault::Down {
            // Not awaited: the loop aborts the connection this handler runs on.
            tokio::spawn(async move {
                tokio::time::sleep(HTTP_DOWN_DELAY).await;
                let _ = control.send(Command::Sync(None));
            });
        } else {
            let _ = control.send(Command::Sync(None));
        }
    }
    let down = fault == Fault::Down;
    let mut response = Json(fault).into_response();
    if down {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
