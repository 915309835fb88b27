//! Timed HTTP GETs against the daemon from a loopback client: connect, request, read to
//! the end (`Connection: close`), as a scraper without keep-alive does it.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

/// Bound on one exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

/// A client that reuses its buffers between requests.
pub struct Client {
    addr: SocketAddr,
    buffer: Vec<u8>,
}

impl Client {
    /// A client of `addr`.
    #[must_use]
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            buffer: Vec::with_capacity(1 << 20),
        }
    }

    /// `GET path`; returns the time from before the connect to the end of the response,
    /// and the response's length.
    ///
    /// # Errors
    /// When the exchange fails or the status is not 200.
    pub fn timed_get(&mut self, path: &str) -> anyhow::Result<(Duration, usize)> {
        self.buffer.clear();
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&self.addr, EXCHANGE_LIMIT)
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_read_timeout(Some(EXCHANGE_LIMIT))?;
        stream.set_write_timeout(Some(EXCHANGE_LIMIT))?;
        stream.set_nodelay(true)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        stream
            .read_to_end(&mut self.buffer)
            .with_context(|| format!("reading the answer to GET {path}"))?;
        let elapsed = started.elapsed();
        ensure!(
            self.buffer.starts_with(b"HTTP/1.1 200"),
            "GET {path} answered {:?}",
            String::from_utf8_lossy(&self.buffer[..self.buffer.len().min(64)])
        );
        Ok((elapsed, self.buffer.len()))
    }

    /// The body of the last response, as text.
    #[must_use]
    pub fn last_body(&self) -> &str {
        let text = std::str::from_utf8(&self.buffer).unwrap_or("");
        text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
    }
}

/// The `q`-quantile (0..=1) of `values` by the nearest-rank method; NaN when empty.
#[must_use]
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a small slice"
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases: [(&str, &[f64], f64, f64); 5] = [
            ("p99 of 1..=100", &hundred, 0.99, 99.0),
            ("p50 of 1..=100", &hundred, 0.5, 50.0),
            ("max", &hundred, 1.0, 100.0),
            ("p99 of three", &[3.0, 1.0, 2.0], 0.99, 3.0),
            ("p0 is the minimum", &[3.0, 1.0, 2.0], 0.0, 1.0),
        ];
        for (name, values, q, expected) in cases {
            let got = quantile(values, q);
            assert!(
                (got - expected).abs() < 1e-12,
                "{name}: expected {expected}, got {got}"
            );
        }
        assert!(quantile(&[], 0.5).is_nan(), "empty gives NaN");
    }
}
