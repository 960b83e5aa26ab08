//! `floor`: what the kernel alone charges for one delivery on this machine now, with
//! no server. The same layout as `fanout` (R rooms × M connections over loopback, one
//! message frame a member, TCP_NODELAY, one `writev` of WebSocket header + frame as the
//! server writes it) is written by one plain thread to a child process that only
//! reads. The writer thread's CPU time per write is the floor under the server's "CPU
//! per delivery": the kernel's send path, with the receiver's side of loopback that
//! the kernel runs inside the sender's system call. Issue 16 asks for an absolute
//! figure per delivery on a shared machine whose speed varies by the hour; run this
//! beside `fanout` to tell the server's own cost from the machine's.
//!
//! The writer paces itself with short sleeps, and waking from one costs CPU too (tens
//! of µs on this machine, most of the figure at low rates). So the CPU of the write
//! bursts alone is measured apart (the thread's CPU clock read before and after each
//! burst) and is the floor; the figure with the pacing is given beside it.
//!
//! Every byte written is checked as received by the child; a full send buffer (a
//! short write) makes the run fail, as the figure would then be of something else.

use std::{
    io::{BufRead, BufReader, IoSlice, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use rtm::ws::protocol::{Author, Event, EventKind, ServerFrame};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::{
    report::{Outcome, r3},
    sys, wsconn,
};

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Rooms.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 50)]
    pub members: usize,
    /// Messages per second over all rooms (each is one write per member).
    #[arg(long, default_value_t = 1280.0)]
    pub rate: f64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 12.0)]
    pub duration: f64,
    /// Message texts of this many bytes, as `fanout --text-bytes` (0: the timing stamp only).
    #[arg(long, default_value_t = 0)]
    pub text_bytes: usize,
    /// Print only the JSON result line.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub max_runtime: u64,
    /// Internal: be the reading child for this many connections.
    #[arg(long, hide = true)]
    pub receiver: Option<usize>,
}

/// Most connections one run opens (each side holds one file per connection).
const MAX_CONNECTIONS: usize = 15_000;

pub async fn run(a: FloorArgs) -> Result<Outcome> {
    if let Some(n) = a.receiver {
        return receive(n).await;
    }
    let conns = a.rooms.saturating_mul(a.members);
    if conns == 0 || conns > MAX_CONNECTIONS {
        bail!("--rooms × --members must be 1..={MAX_CONNECTIONS}, not {conns}");
    }
    let rate_ok = a.rate > 0.0 && a.rate.is_finite();
    if !(rate_ok && a.duration > 0.0 && a.duration <= 600.0) {
        bail!("--rate must be positive and --duration within 0..600 s");
    }
    let child = Reader::start(conns)?;
    let args = a.clone();
    let port = child.port;
    let child_pid = child.pid();
    let writer = tokio::task::spawn_blocking(move || write_all(&args, port, child_pid));
    let w = match writer.await {
        Ok(w) => w?,
        Err(e) => bail!("the writer thread failed: {e}"),
    };
    // The child reads every socket to its end; a child that never reports is killed.
    let reading = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.finish()
    });
    let received = match tokio::time::timeout(Duration::from_secs(60), reading).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => bail!("waiting for the reading child failed: {e}"),
        Err(_) => {
            // SAFETY: kill only sends a signal to the child this run started.
            unsafe { libc::kill(child_pid as i32, libc::SIGKILL) };
            bail!("the reading child did not finish reading within 60 s");
        }
    };
    let per = |cpu: f64| if w.writes > 0 { r3(cpu / w.writes as f64 * 1e6) } else { 0.0 };
    let ok = w.short_writes == 0 && received == w.bytes && w.writes > 0;
    let human = vec![
        format!(
            "{} rooms × {} connections, {} messages/s = {:.0} writes/s of {}-byte frames, {:.1} s (no server)",
            a.rooms,
            a.members,
            a.rate,
            w.writes as f64 / w.seconds,
            w.frame_bytes,
            w.seconds
        ),
        format!(
            "writer: {} writes, {:.3} µs CPU a write in its write bursts (the floor of a delivery), \
             {:.3} with its pacing; reader process: {:.3} µs a write",
            w.writes,
            per(w.burst_cpu),
            per(w.writer_cpu),
            per(w.reader_cpu)
        ),
        format!("bytes written {} / read {}; short writes {}", w.bytes, received, w.short_writes),
    ];
    Ok(Outcome {
        workload: "floor",
        params: json!({
            "rooms": a.rooms, "members": a.members, "rate": a.rate,
            "duration_s": a.duration, "text_bytes": a.text_bytes,
        }),
        results: json!({
            "writes": w.writes,
            "writes_per_s": r3(w.writes as f64 / w.seconds),
            "frame_bytes": w.frame_bytes,
            "burst_us_per_write": per(w.burst_cpu),
            "writer_us_per_write": per(w.writer_cpu),
            "reader_us_per_write": per(w.reader_cpu),
            "bytes_written": w.bytes,
            "bytes_read": received,
            "short_writes": w.short_writes,
            "seconds": r3(w.seconds),
        }),
        ok,
        human,
    })
}

/// What the writer did.
struct Written {
    writes: u64,
    bytes: u64,
    short_writes: u64,
    frame_bytes: usize,
    seconds: f64,
    /// The thread's CPU over the whole run, its pacing sleeps' wake-ups included.
    writer_cpu: f64,
    /// The thread's CPU inside the write bursts only.
    burst_cpu: f64,
    reader_cpu: f64,
}

/// Connects every socket, then writes each due message's frame to its room's members
/// at the rate, from this thread only.
fn write_all(a: &FloorArgs, port: u16, reader: u32) -> Result<Written> {
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut socks = Vec::with_capacity(a.rooms * a.members);
    for i in 0..a.rooms * a.members {
        let s = TcpStream::connect(to).with_context(|| format!("connection {i} to the reader"))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    // The reader accepts and starts its tasks; what it does meanwhile is not measured.
    std::thread::sleep(Duration::from_millis(500));
    let per_room = a.members;
    let (mut writes, mut bytes, mut short_writes, mut frame_bytes) = (0u64, 0u64, 0u64, 0usize);
    let mut sent = 0u64;
    let mut burst_cpu = 0.0;
    let reader0 = sys::cpu_secs(reader).unwrap_or(0.0);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= a.duration {
            break;
        }
        let due = (elapsed * a.rate) as u64;
        // Read the clock only around real work: one more system call per burst.
        let burst0 = (sent < due).then(thread_cpu);
        while sent < due {
            let room = (sent % a.rooms as u64) as usize;
            let frame = message_frame(room, sent, a.text_bytes);
            let mut head = [0u8; 10];
            let head = rtm::ws::outbox::header(frame.len(), &mut head);
            frame_bytes = head.len() + frame.len();
            for s in &socks[room * per_room..(room + 1) * per_room] {
                let mut s: &TcpStream = s;
                match s.write_vectored(&[IoSlice::new(head), IoSlice::new(&frame)]) {
                    Ok(n) => {
                        bytes += n as u64;
                        if n < frame_bytes {
                            short_writes += 1;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => short_writes += 1,
                    Err(e) => return Err(e).context("write to the reader"),
                }
                writes += 1;
            }
            sent += 1;
        }
        if let Some(c0) = burst0 {
            burst_cpu += thread_cpu() - c0;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = start.elapsed().as_secs_f64();
    let writer_cpu = thread_cpu() - cpu0;
    let reader_cpu = sys::cpu_secs(reader).unwrap_or(0.0) - reader0;
    drop(socks);
    Ok(Written { writes, bytes, short_writes, frame_bytes, seconds, writer_cpu, burst_cpu, reader_cpu })
}

/// A `message` event as the server encodes it for a bench room (the text as `fanout`
/// fills it).
fn message_frame(room: usize, n: u64, text_bytes: usize) -> bytes::Bytes {
    let text = wsconn::bench_text_sized(sys::unix_micros(), room, n, text_bytes);
    let author = Author { id: 1000 + room as i64, username: format!("bench-000000-u{room}") };
    let ev = Event {
        client_id: Some(format!("c{n}")),
        ..Event::plain(room as i64 + 1, Some(n as i64 + 1), EventKind::Text, author, text, 1_764_600_000_000)
    };
    ServerFrame::Message(ev).encode()
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into the struct we own and pass by pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The reading child: this executable again with `floor --receiver N`.
struct Reader {
    child: Child,
    port: u16,
    out: BufReader<std::process::ChildStdout>,
}

impl Reader {
    fn start(conns: usize) -> Result<Reader> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut child = Command::new(exe)
            .args(["floor", "--receiver", &conns.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the reading child")?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            bail!("the reading child has no stdout");
        };
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        out.read_line(&mut line).context("the reading child said nothing")?;
        let Some(port) = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()) else {
            let _ = child.kill();
            bail!("the reading child said {line:?}, not its port");
        };
        Ok(Reader { child, port, out })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to read every connection to its end; returns the bytes read.
    fn finish(&mut self) -> Result<u64> {
        let mut line = String::new();
        self.out.read_line(&mut line).context("the reading child did not report")?;
        let _ = self.child.wait();
        line.trim()
            .strip_prefix("read ")
            .and_then(|b| b.parse().ok())
            .with_context(|| format!("the reading child said {line:?}"))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child's side: accepts `n` connections and reads each to its end, as a client
/// reads its socket (one task each), then prints the bytes read.
async fn receive(n: usize) -> Result<Outcome> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    println!("port {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (mut s, _) = listener.accept().await?;
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut total = 0u64;
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                total += k as u64;
            }
            total
        });
    }
    let mut total = 0u64;
    while let Some(r) = tasks.join_next().await {
        total += r.unwrap_or(0);
    }
    println!("read {total}");
    std::io::stdout().flush()?;
    std::process::exit(0);
}
