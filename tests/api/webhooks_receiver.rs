//! A webhook receiver for the tests: a real HTTP server on a loopback port that records every
//! request it gets (headers, body, when) and answers from a script; and a verifier of Standard
//! Webhooks signatures written here from the specification (HMAC-SHA256 as RFC 2104 defines
//! it, over SHA-256), sharing no code with the server's signer.
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }

    pub fn job_id(&self) -> String {
        self.json()["data"]["job_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// What the receiver answers: each scripted answer once, in order, then `otherwise`.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: Value) -> Self {
        Self {
            body: body.to_string(),
            ..Self::status(status)
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Answer>,
    otherwise: Option<Answer>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    script: Arc<Mutex<Script>>,
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl Receiver {
    /// A receiver answering 204 to everything until told otherwise.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// On a given address (to come back on the same port after a restart).
    pub async fn start_on(address: SocketAddr) -> Receiver {
        let script = Arc::new(Mutex::new(Script::default()));
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .route("/", post(receive))
            .with_state(script.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .unwrap();
        });
        Receiver {
            address,
            script,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answers these first, in order.
    pub fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().next.extend(answers);
    }

    /// Answers this once the scripted answers are used up.
    pub fn otherwise(&self, answer: Answer) {
        self.script.lock().unwrap().otherwise = Some(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Waits (up to `limit`) until `count` requests have come.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let got = super::helpers::within(limit, async || {
            let received = self.received();
            (received.len() >= count).then_some(received)
        })
        .await;
        got.unwrap_or_else(|| {
            panic!(
                "expected {count} requests within {limit:?}, got {}",
                self.received().len()
            )
        })
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut script = script.lock().unwrap();
        script.received.push(Received {
            headers,
            body,
            at: Instant::now(),
        });
        let next = script.next.pop_front();
        next.or_else(|| script.otherwise.clone())
            .unwrap_or(Answer::status(204))
    };
    tokio::time::sleep(answer.delay).await;
    (
        StatusCode::from_u16(answer.status).unwrap(),
        [("content-type", "application/json")],
        answer.body,
    )
        .into_response()
}

/// HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || message)), with a key longer than
/// the 64-byte block hashed first.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Whether a request carries a valid signature by `secret` (`whsec_<base64>`), as the
/// specification says a receiver checks it: the signed content is `{id}.{timestamp}.{body}`,
/// the header lists `v1,<base64>` signatures separated by spaces, any one may match, and the
/// timestamp must be within five minutes of now.
pub fn verify(received: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64 secret");
    let id = received.header("webhook-id");
    let timestamp = received.header("webhook-timestamp");
    let sent_at: i64 = timestamp.parse().expect("a number of seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent_at).abs() > 300 {
        return false;
    }
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&received.body);
    let expected = STANDARD.encode(hmac_sha256(&key, &content));
    received
        .header("webhook-signature")
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .any(|signature| signature == expected)
}

#[test]
fn the_test_hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
