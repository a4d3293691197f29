//! Behaviour of `ReplayBody`: streaming bodies under the cap are resent with the same bytes, bodies
//! over the cap go once.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bulwark_core::replay::{replayable, CanReplay, ReplayBody, ReplayError, DEFAULT_REPLAY_CAP};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use proptest::prelude::*;
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body of the given chunks, then the given trailers.
fn streaming(
    chunks: &[&'static str],
    trailers: Option<HeaderMap>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin> {
    let mut frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
    StreamBody::new(stream::iter(frames))
}

/// A body fed through a channel, so a test decides when each frame arrives.
struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx)
    }
}

fn channel() -> (
    mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>,
    ChannelBody,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChannelBody { rx })
}

fn data(s: &'static str) -> Result<Frame<Bytes>, io::Error> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", HeaderValue::from_static("abc123"));
    t
}

/// Reads the next frame of `body`.
async fn next<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Reads the whole of `body`: its bytes and trailers, or its error.
async fn read_all<B>(body: B) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

#[tokio::test]
async fn a_streaming_body_under_the_cap_is_resent_with_the_same_bytes_and_trailers() {
    let body = ReplayBody::new(
        streaming(&["alpha ", "beta ", "gamma"], Some(trailers())),
        DEFAULT_REPLAY_CAP,
    );
    let before = body.clone();
    assert_eq!(body.size_hint().lower(), 0);

    let (first, first_trailers) = read_all(body.clone()).await.unwrap();
    assert_eq!(first, "alpha beta gamma");
    assert_eq!(first_trailers, Some(trailers()));
    assert!(body.can_replay());

    // A clone made afterwards, and one made before, send the same bytes and trailers.
    let after = body.clone();
    assert_eq!(after.size_hint().exact(), Some(16));
    assert!(!after.is_end_stream());
    for clone in [after, before] {
        let (again, again_trailers) = read_all(clone).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(again_trailers, Some(trailers()));
    }
}

#[tokio::test]
async fn a_clone_continues_where_a_failed_first_attempt_stopped() {
    let (tx, inner) = channel();
    for chunk in ["one,", "two,", "three"] {
        tx.send(data(chunk)).unwrap();
    }
    drop(tx);
    let body = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);

    // The first attempt sends one chunk, then the connection fails and it is dropped.
    let mut first = body.clone();
    let chunk = next(&mut first).await.unwrap().unwrap();
    assert_eq!(chunk.into_data().unwrap(), "one,");
    drop(first);
    assert!(body.can_replay());

    // The retry gets the replayed prefix and then the rest from the inner body.
    let (second, trailers) = read_all(body.clone()).await.unwrap();
    assert_eq!(second, "one,two,three");
    assert_eq!(trailers, None);

    // And a third attempt replays all of it from the copy.
    let (third, _) = read_all(body.clone()).await.unwrap();
    assert_eq!(third, "one,two,three");
}

#[tokio::test]
async fn a_body_over_the_cap_is_sent_once_and_a_clone_reports_a_replay_error() {
    let body = ReplayBody::new(streaming(&["0123456789", "abcdefghij"], None), 15);
    let first = body.clone();

    // The first send loses nothing and raises no error.
    let (sent, _) = read_all(first).await.unwrap();
    assert_eq!(sent, "0123456789abcdefghij");
    assert!(!body.can_replay());
    assert!(!CanReplay::can_replay(&body));

    // A clone polled anyway yields an error, not a truncated body.
    let err = read_all(body.clone()).await.unwrap_err();
    let replay = err.downcast_ref::<ReplayError>().expect("a ReplayError");
    assert!(replay.is_cap_exceeded());
    assert_eq!(replay.cap(), Some(15));
    assert_eq!(
        err.to_string(),
        "request body exceeded the replay cap of 15 bytes; it cannot be sent again"
    );
}

#[tokio::test]
async fn the_cap_is_inclusive() {
    let body = ReplayBody::new(streaming(&["01234", "56789"], None), 10);
    assert_eq!(read_all(body.clone()).await.unwrap().0, "0123456789");
    assert!(body.can_replay());
    assert_eq!(read_all(body.clone()).await.unwrap().0, "0123456789");
}

#[tokio::test]
async fn a_clone_that_falls_behind_after_the_cap_errors_while_the_reader_finishes() {
    let (tx, inner) = channel();
    let body = ReplayBody::new(inner, 4);
    let mut reader = body.clone();
    tx.send(data("abc")).unwrap();
    assert_eq!(
        next(&mut reader)
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap(),
        "abc"
    );
    // Still replayable: a retry made now would start over from the copy.
    assert!(body.can_replay());
    tx.send(data("defg")).unwrap();
    tx.send(data("hij")).unwrap();
    drop(tx);
    let (rest, _) = read_all(reader).await.unwrap();
    assert_eq!(rest, "defghij");
    assert!(!body.can_replay());
    assert!(read_all(body.clone())
        .await
        .unwrap_err()
        .is::<ReplayError>());
}

#[tokio::test]
async fn an_inner_error_goes_to_the_reader_and_a_replay_reports_an_error() {
    let (tx, inner) = channel();
    tx.send(data("partial")).unwrap();
    tx.send(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "upload reset",
    )))
    .unwrap();
    let body = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);

    let err = read_all(body.clone()).await.unwrap_err();
    assert!(err.is::<io::Error>(), "the inner error itself: {err}");
    assert!(!body.can_replay());

    let mut replay = body.clone();
    assert_eq!(
        next(&mut replay)
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap(),
        "partial"
    );
    assert!(!replay.is_end_stream());
    let err = next(&mut replay).await.unwrap().unwrap_err();
    let replay_err = err.downcast_ref::<ReplayError>().expect("a ReplayError");
    assert!(!replay_err.is_cap_exceeded());
    assert!(err.to_string().contains("upload reset"), "{err}");
    assert!(next(&mut replay).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn clones_polled_at_the_same_time_both_get_the_whole_body() {
    // Paused time: if a clone's wake-up were lost, the timeout fires at once instead of hanging.
    let within = |task| tokio::time::timeout(std::time::Duration::from_secs(5), task);
    let (tx, inner) = channel();
    let body = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);
    let a = tokio::spawn(read_all(body.clone()));
    let b = tokio::spawn(read_all(body.clone()));
    // Let both clones park on the empty channel before anything arrives.
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    for chunk in ["x", "y", "z"] {
        tx.send(data(chunk)).unwrap();
        tokio::task::yield_now().await;
    }
    tx.send(Ok(Frame::trailers(trailers()))).unwrap();
    drop(tx);
    let a = within(a)
        .await
        .expect("first clone woken")
        .unwrap()
        .unwrap();
    let b = within(b)
        .await
        .expect("second clone woken")
        .unwrap()
        .unwrap();
    assert_eq!(a.0, "xyz");
    assert_eq!(a, b);
    assert_eq!(b.1, Some(trailers()));
}

#[tokio::test]
async fn end_of_stream_and_size_hints_follow_each_clone() {
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 64);
    let mut first = body.clone();
    assert_eq!(first.size_hint().exact(), Some(5));
    assert!(!first.is_end_stream());
    assert_eq!(
        next(&mut first)
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap(),
        "hello"
    );
    assert!(first.is_end_stream());
    assert_eq!(first.size_hint().exact(), Some(0));

    let second = body.clone();
    assert!(!second.is_end_stream());
    assert_eq!(second.size_hint().exact(), Some(5));
    assert_eq!(read_all(second).await.unwrap().0, "hello");

    let empty = ReplayBody::new(Empty::<Bytes>::new(), 64);
    assert!(empty.is_end_stream());
    assert_eq!(empty.size_hint().exact(), Some(0));
    assert_eq!(read_all(empty.clone()).await.unwrap().0, "");
}

#[test]
fn replayable_keeps_the_request_parts_and_is_clone() {
    #[derive(Clone, Debug, PartialEq)]
    struct TraceId(u64);

    let mut req = Request::builder()
        .method(Method::PUT)
        .uri("http://books.example/books/42")
        .header("content-type", "application/json")
        .body(streaming(&["{}"], None))
        .unwrap();
    req.extensions_mut().insert(TraceId(7));

    let req = replayable(req, 1024);
    let copy = req.clone();
    for r in [&req, &copy] {
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "http://books.example/books/42");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.extensions().get::<TraceId>(), Some(&TraceId(7)));
    }
}

#[tokio::test]
async fn can_replay_on_a_request_follows_its_body() {
    let req = replayable(
        Request::post("/upload")
            .body(streaming(&["0123456789"], None))
            .unwrap(),
        4,
    );
    assert!(req.can_replay());
    let first = req.clone();
    read_all(first.into_body()).await.unwrap();
    assert!(!req.can_replay());

    let small = replayable(
        Request::post("/upload")
            .body(streaming(&["0123"], None))
            .unwrap(),
        4,
    );
    read_all(small.clone().into_body()).await.unwrap();
    assert!(small.can_replay());
}

#[test]
fn in_memory_bodies_can_always_replay() {
    assert!(String::from("x").can_replay());
    assert!(vec![1u8].can_replay());
    assert!(Bytes::new().can_replay());
    assert!(().can_replay());
    assert!("x".can_replay());
    assert!(Full::new(Bytes::new()).can_replay());
    assert!(Empty::<Bytes>::new().can_replay());
    assert!(Request::new("body").can_replay());
}

#[test]
fn debug_does_not_need_a_debug_body() {
    struct Opaque;
    let body = ReplayBody::new(Opaque, 8);
    let text = format!("{body:?}");
    assert!(text.starts_with("ReplayBody"), "{text}");
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #[test]
    fn every_send_is_exact_and_the_cap_decides_replay(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..12),
        cap in 0usize..300,
        stop_after in 0usize..14,
    ) {
        let input: Vec<u8> = chunks.concat();
        let frames: Vec<Result<Frame<Bytes>, Infallible>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from(c.clone())))).collect();
        let body = ReplayBody::new(StreamBody::new(stream::iter(frames)), cap);

        run(async {
            // An attempt that is dropped part-way changes nothing for later ones.
            let mut partial = body.clone();
            for _ in 0..stop_after.min(chunks.len()) {
                next(&mut partial).await.unwrap().unwrap();
            }
            drop(partial);

            let prefix: usize = chunks.iter().take(stop_after).map(Vec::len).sum();
            if prefix > cap {
                prop_assert!(!body.can_replay());
                return Ok(());
            }

            let first = read_all(body.clone()).await.unwrap().0;
            prop_assert_eq!(&first[..], &input[..]);
            prop_assert_eq!(body.can_replay(), input.len() <= cap);
            if body.can_replay() {
                for _ in 0..2 {
                    let clone = body.clone();
                    prop_assert_eq!(clone.size_hint().exact(), Some(input.len() as u64));
                    let again = read_all(clone).await.unwrap().0;
                    prop_assert_eq!(&again[..], &input[..]);
                }
            } else {
                prop_assert!(read_all(body.clone()).await.unwrap_err().is::<ReplayError>());
            }
            Ok(())
        })?;
    }

    #[test]
    fn the_first_send_is_exact_whatever_the_cap(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..12),
        cap in 0usize..300,
    ) {
        let input: Vec<u8> = chunks.concat();
        let frames: Vec<Result<Frame<Bytes>, Infallible>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from(c.clone())))).collect();
        let body = ReplayBody::new(StreamBody::new(stream::iter(frames)), cap);
        let first = run(read_all(body.clone())).unwrap().0;
        prop_assert_eq!(&first[..], &input[..]);
        prop_assert_eq!(body.can_replay(), input.len() <= cap);
    }
}
