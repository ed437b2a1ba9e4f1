//! A real SMTP listener for the tests: speaks enough SMTP over TCP for lettre to deliver, and
//! keeps every message it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One message as received: envelope and the raw DATA.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    pub fn subject(&self) -> String {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_owned()
    }
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: CancellationToken,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> SmtpSink {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (sink_mails, signal) = (Arc::clone(&mails), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = signal.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(session(stream, Arc::clone(&sink_mails)));
                        }
                    }
                }
            }
        });
        SmtpSink { addr, mails, stop }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until a received mail satisfies `wanted`; returns it.
    pub async fn wait_for(&self, what: &str, wanted: impl Fn(&Mail) -> bool) -> Mail {
        let started = Instant::now();
        loop {
            if let Some(mail) = self.mails().into_iter().find(|m| wanted(m)) {
                return mail;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no mail {what} within 10 s: {:#?}", self.mails());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 sink ESMTP ready\r\n").await;
    let mut to = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let command = line.to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if command.starts_with("MAIL FROM") {
            to.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            to.push(line[8..].trim().trim_start_matches(':').trim().trim_matches(['<', '>']).to_owned());
            b"250 OK\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                data.push_str(&line);
                data.push('\n');
            }
            mails.lock().unwrap().push(Mail { to: to.clone(), data });
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 OK\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
