//! What Redis itself says it did during a measurement: `INFO server stats
//! commandstats` over a plain RESP request (one short TCP connection, loopback only),
//! read before and after a step. Gives the commands and `PUBLISH`es per second, the
//! bytes in and out (out is mostly pub/sub deliveries to the nodes), and Redis's pid
//! (`process_id`) so its CPU can be read from /proc on this machine.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command (an array of bulk strings) and reads one reply: a simple string,
/// an error or a bulk string (the only replies the commands we send have).
async fn command(addr: SocketAddr, args: &[&str]) -> Result<String> {
    tokio::time::timeout(TIMEOUT, async {
        let mut s = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to Redis at {addr}"))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("Redis closed the connection");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(reply) = parse(&buf)? {
                return Ok(reply);
            }
        }
    })
    .await
    .context("Redis did not answer in time")?
}

/// A whole reply, or `None` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<String>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..eol])?;
    match head.as_bytes().first() {
        Some(b'+') => Ok(Some(head[1..].to_string())),
        Some(b'-') => bail!("Redis: {}", &head[1..]),
        Some(b'$') => {
            let len: usize = head[1..].parse().context("bad bulk length")?;
            let body = &buf[eol + 2..];
            if body.len() < len {
                return Ok(None);
            }
            Ok(Some(String::from_utf8_lossy(&body[..len]).into_owned()))
        }
        _ => bail!("unexpected Redis reply {head:?}"),
    }
}

/// PING until PONG.
pub async fn ping(addr: SocketAddr) -> Result<()> {
    let r = command(addr, &["PING"]).await?;
    if r != "PONG" {
        bail!("PING answered {r}");
    }
    Ok(())
}

/// The `key:value` lines of INFO.
pub async fn info(addr: SocketAddr) -> Result<BTreeMap<String, String>> {
    let text = command(addr, &["INFO", "server", "stats", "commandstats"]).await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The counters we compare between two readings.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    commands: u64,
    net_in: u64,
    net_out: u64,
    /// Calls per command (`cmdstat_publish` → `publish`).
    calls: BTreeMap<String, u64>,
}

fn snapshot(info: &BTreeMap<String, String>) -> Snapshot {
    let num = |k: &str| info.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    let calls = info
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?;
            let calls = v.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect();
    Snapshot {
        commands: num("total_commands_processed"),
        net_in: num("total_net_input_bytes"),
        net_out: num("total_net_output_bytes"),
        calls,
    }
}

/// Redis's work during a measurement, per second.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RedisUse {
    pub commands_per_s: f64,
    pub publish_per_s: f64,
    pub net_in_kib_per_s: f64,
    pub net_out_kib_per_s: f64,
    /// Calls per second of every command that was called (`publish`, `subscribe`, …).
    pub calls_per_s: BTreeMap<String, f64>,
}

impl RedisUse {
    /// `1,000 PUBLISH/s, 1,020 commands/s, in 200 KiB/s, out 600 KiB/s`.
    pub fn short(&self) -> String {
        format!(
            "{:.0} PUBLISH/s, {:.0} commands/s, in {:.0} KiB/s, out {:.0} KiB/s",
            self.publish_per_s, self.commands_per_s, self.net_in_kib_per_s, self.net_out_kib_per_s
        )
    }
}

/// Reads INFO at the start and at the end of a measurement.
pub struct RedisMeter {
    addr: SocketAddr,
    s0: Snapshot,
    t0: tokio::time::Instant,
}

impl RedisMeter {
    pub async fn start(addr: SocketAddr) -> Option<RedisMeter> {
        let s0 = snapshot(&info(addr).await.ok()?);
        Some(RedisMeter { addr, s0, t0: tokio::time::Instant::now() })
    }

    pub async fn read(&self) -> Option<RedisUse> {
        let s1 = snapshot(&info(self.addr).await.ok()?);
        let secs = self.t0.elapsed().as_secs_f64().max(1e-3);
        let per_s = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs).round();
        let calls_per_s: BTreeMap<String, f64> = s1
            .calls
            .iter()
            .map(|(k, &v)| (k.clone(), per_s(self.s0.calls.get(k).copied().unwrap_or(0), v)))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        Some(RedisUse {
            commands_per_s: per_s(self.s0.commands, s1.commands),
            publish_per_s: calls_per_s.get("publish").copied().unwrap_or(0.0)
                + calls_per_s.get("spublish").copied().unwrap_or(0.0),
            net_in_kib_per_s: (per_s(self.s0.net_in, s1.net_in) / 1024.0).round(),
            net_out_kib_per_s: (per_s(self.s0.net_out, s1.net_out) / 1024.0).round(),
            calls_per_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_and_info() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Some("PONG".into()));
        assert_eq!(parse(b"$5\r\nab").unwrap(), None);
        assert_eq!(parse(b"$5\r\nabcde\r\n").unwrap(), Some("abcde".into()));
        assert!(parse(b"-ERR no\r\n").is_err());
        let info: BTreeMap<String, String> = [
            ("total_commands_processed", "10"),
            ("cmdstat_publish", "calls=7,usec=20,usec_per_call=2.86,rejected_calls=0,failed_calls=0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = snapshot(&info);
        assert_eq!((s.commands, s.calls.get("publish").copied()), (10, Some(7)));
    }
}
