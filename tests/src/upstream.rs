//! In-process HTTP upstreams on `127.0.0.1:0`: a test scripts the replies and inspects what
//! arrived (after Envoy and the filters had their say).

use anyhow::Result;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, exactly as sent on the wire.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    /// When the request's head arrived (before its body was read and before any scripted
    /// delay): tests compare these to see calls overlap, never wall-clock thresholds.
    pub arrived: Instant,
}

impl Recorded {
    /// The first value of a header (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Bytes>,
    /// Sent as one body with `content-length` (false: chunked transfer encoding).
    pub fixed_length: bool,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            chunks: Vec::new(),
            fixed_length: true,
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status)
            .header("content-type", "text/plain")
            .body(Bytes::from(body.to_string()))
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(Bytes::from(value.to_string()))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.chunks = vec![body.into()];
        self.fixed_length = true;
        self
    }

    /// Streams the body in these pieces with chunked transfer encoding (no content-length).
    pub fn chunked(mut self, chunks: Vec<Bytes>) -> Self {
        self.chunks = chunks;
        self.fixed_length = false;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// [`Reply::delay`] only when `slow` holds: one slow path among fast ones.
    pub fn delay_if(self, slow: bool, delay: Duration) -> Self {
        if slow {
            self.delay(delay)
        } else {
            self
        }
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running upstream; stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream whose replies come from `handler`.
    pub async fn start(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Result<Self> {
        Self::start_on("127.0.0.1:0", handler).await
    }

    /// The same on a given address (the demo uses fixed ports so its curl commands are stable).
    pub async fn start_on(
        addr: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let handler = handler.clone();
            let seen = seen.clone();
            async move { serve(req, &*handler, &seen).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            requests,
            task,
        })
    }

    /// An upstream whose `reply` also gets the request's number (1, 2, ...): the same number in
    /// two answers means the second came from a cache.
    pub async fn numbered(
        reply: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Result<Self> {
        let count = std::sync::atomic::AtomicUsize::new(0);
        Self::start(move |r| {
            reply(
                r,
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            )
        })
        .await
    }

    /// Replies 200 with a JSON description of the request it got (method, path, headers, body).
    pub async fn echo() -> Result<Self> {
        Self::start(|r| Reply::json(200, &describe(r))).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn hits(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or_default()
    }

    pub fn last(&self) -> Recorded {
        match self.requests().pop() {
            Some(r) => r,
            None => panic!("the upstream on port {} received no request", self.port()),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The echo reply body: `{"method", "path", "headers": {name: [values]}, "body"}`.
pub fn describe(r: &Recorded) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (n, v) in &r.headers {
        let entry = headers
            .entry(n.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(a) = entry {
            a.push(String::from_utf8_lossy(v).into_owned().into());
        }
    }
    serde_json::json!({
        "method": r.method,
        "path": r.path,
        "headers": headers,
        "body": String::from_utf8_lossy(&r.body),
    })
}

async fn serve(req: Request, handler: &Handler, seen: &Mutex<Vec<Recorded>>) -> Response {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
        arrived,
    };
    let reply = handler(&recorded);
    if let Ok(mut s) = seen.lock() {
        s.push(recorded);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut builder = Response::builder().status(reply.status);
    for (n, v) in &reply.headers {
        builder = builder.header(n, v);
    }
    let body = if reply.fixed_length {
        Body::from(reply.chunks.concat())
    } else {
        let chunks = reply.chunks.clone();
        Body::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ))
    };
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::from("bad scripted reply")))
}

/// A WebSocket upstream on `127.0.0.1:0`: answers an upgrade with 101 and then echoes every
/// byte until either side closes; any other request gets `200 ok`. Records each request head
/// (lower-cased, so a test sees what the filters did to it) and counts the upgrades.
pub struct WebSocketEcho {
    pub port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    upgrades: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WebSocketEcho {
    pub async fn start() -> Result<WebSocketEcho> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let upgrades: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (seen, counted) = (heads.clone(), upgrades.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (seen, counted) = (seen.clone(), counted.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut conn).await else {
                        return;
                    };
                    let upgrade = head.contains("\r\nupgrade: websocket\r\n");
                    seen.lock().unwrap().push(head);
                    if !upgrade {
                        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                  content-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
                        let _ = conn.write_all(ok.as_bytes()).await;
                        return;
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let reply = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                                 connection: Upgrade\r\nsec-websocket-accept: test\r\n\r\n";
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut rd, mut wr) = conn.split();
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                });
            }
        });
        Ok(WebSocketEcho {
            port,
            heads,
            upgrades,
            task,
        })
    }

    /// The last request head received ("" before any).
    pub fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// How many upgrades were answered with 101.
    pub fn upgrades(&self) -> usize {
        self.upgrades.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for WebSocketEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads an HTTP/1.1 message head (through the blank line), lower-cased; `None` if the
/// connection ends first or the head exceeds 64 KiB.
pub async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).to_ascii_lowercase())
}
