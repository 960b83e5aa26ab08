//! `rtm-bench`: the load generator of RT Messenger. It drives running servers
//! (`--url`, repeatable: several nodes; loopback only), one it starts itself
//! (`--spawn`) or a cluster it starts itself (`--spawn-cluster N`: PostgreSQL, Redis
//! and N nodes) over real sockets,
//! speaking the same protocol types as the server (`rtm::ws::protocol`), and measures
//! what BENCHMARKS.md reports: memory per connection (`capacity`), room fan-out
//! throughput and latency (`fanout`), DM latency among many idle connections (`dm`),
//! stored messages per second (`persist`) and lossless resumption after a mass
//! reconnect (`reconnect`); `floor` measures what the kernel alone charges for one
//! delivery's write, with no server. `plot` draws a latency-versus-load SVG from results.
//!
//! Every run prints a human summary and ONE JSON line at the end, and exits non-zero
//! when anything was lost or failed. Loads only target 127.0.0.0/8, are bounded in
//! size and time (`--max-runtime`), and stop by themselves.

#[path = "rtm_bench/capacity.rs"]
mod capacity;
#[path = "rtm_bench/cluster.rs"]
mod cluster;
#[path = "rtm_bench/dm.rs"]
mod dm;
#[path = "rtm_bench/fanout.rs"]
mod fanout;
#[path = "rtm_bench/floor.rs"]
mod floor;
#[path = "rtm_bench/history.rs"]
mod history;
#[path = "rtm_bench/http.rs"]
mod http;
#[path = "rtm_bench/load.rs"]
mod load;
#[path = "rtm_bench/persist.rs"]
mod persist;
#[path = "rtm_bench/plot.rs"]
mod plot;
#[path = "rtm_bench/reconnect.rs"]
mod reconnect;
#[path = "rtm_bench/redisinfo.rs"]
mod redisinfo;
#[path = "rtm_bench/report.rs"]
mod report;
#[path = "rtm_bench/search.rs"]
mod search;
#[path = "rtm_bench/setup.rs"]
mod setup;
#[path = "rtm_bench/stats.rs"]
mod stats;
#[path = "rtm_bench/sys.rs"]
mod sys;
#[path = "rtm_bench/target.rs"]
mod target;
#[path = "rtm_bench/wsconn.rs"]
mod wsconn;

use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

/// Load generator for RT Messenger (see BENCHMARKS.md).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hold N idle, authenticated, subscribed connections; report server RSS per connection.
    Capacity(capacity::CapacityArgs),
    /// Rooms × members with senders at a rate: deliveries/s, end-to-end latency, losses.
    Fanout(fanout::FanoutArgs),
    /// Pairs chatting in DMs among many idle connections: latency.
    Dm(dm::DmArgs),
    /// Senders as fast as acks allow: stored messages/s.
    Persist(persist::PersistArgs),
    /// All clients drop at once and resume: time to resume, losses, duplicates.
    Reconnect(reconnect::ReconnectArgs),
    /// Full-text search over a large stored history: queries/s, latency, CPU per query.
    Search(search::SearchArgs),
    /// The kernel's cost of one delivery's write on this machine now, with no server.
    Floor(floor::FloorArgs),
    /// Draw a latency-versus-load SVG from fanout JSON result lines.
    Plot(plot::PlotArgs),
}

/// Flags every workload has.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The server to load (http://HOST:PORT, loopback only). Its public origin must be
    /// this URL's origin (the bench sends it as `Origin`). Repeat it for several nodes
    /// of one cluster: set-up starts on the first, and the fanout and dm workloads put
    /// their senders on the first node and their receivers on the others in turn.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: Vec<String>,
    /// Start the `rtm` binary next to this executable on a free port with a temporary
    /// data dir and benchmark limits; stop it at the end.
    #[arg(long, conflicts_with = "spawn_cluster")]
    pub spawn: bool,
    /// Start a throwaway PostgreSQL (unless --database is given) and redis-server on
    /// free loopback ports, then N `rtm` nodes sharing them (`--bus redis://…
    /// --bus-prefix rtmbench`); stop them all at the end.
    #[arg(long, value_name = "N")]
    pub spawn_cluster: Option<usize>,
    /// With --spawn or --spawn-cluster: the servers' database URL (default: SQLite in
    /// the temp dir for --spawn, a throwaway PostgreSQL for --spawn-cluster).
    #[arg(long)]
    pub database: Option<String>,
    /// With --spawn-cluster (and no --database) or `search --postgres`: a setting for
    /// the throwaway PostgreSQL (repeatable), e.g. --pg-conf synchronous_commit=off.
    /// Every result line reports its durability settings (`postgres`).
    #[arg(long, value_name = "NAME=VALUE")]
    pub pg_conf: Vec<String>,
    /// With --spawn: the server's --outbox-frames.
    #[arg(long)]
    pub outbox_frames: Option<usize>,
    /// With --spawn: one more argument for the server (repeatable), e.g. --server-arg=--db-pool=16.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// With --url: the server's pid, to read its RSS and CPU time (repeatable, in the
    /// order of the --url flags).
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// With --url: the cluster's Redis (redis://127.0.0.1:PORT/, loopback only), to
    /// report its CPU and traffic (INFO) next to the nodes'.
    #[arg(long)]
    pub redis: Option<String>,
    /// Seconds of load (per step); each workload has its own default.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print only the JSON result line (it is always printed last).
    #[arg(long)]
    pub json: bool,
    /// Bench accounts to sign up (each costs the server a ~25 ms password hash).
    #[arg(long)]
    pub users: Option<usize>,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Give up (and stop everything) after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub max_runtime: u64,
    /// No progress bars (child processes, scripts).
    #[arg(long, hide = true)]
    pub quiet: bool,
    /// With --spawn or --spawn-cluster: store this many messages before the servers
    /// start, as a long-lived server's database holds (see history.rs): costs that grow
    /// with what is kept never show on a fresh database.
    #[arg(long, default_value_t = 0)]
    pub history: usize,
    /// Rooms the --history messages are spread over (a few busy, many quiet).
    #[arg(long, default_value_t = 400)]
    pub history_rooms: usize,
    /// Accounts that wrote the --history messages.
    #[arg(long, default_value_t = 200)]
    pub history_accounts: usize,
    /// Fill every message's text with words up to this many bytes, as people write
    /// (fanout, dm, persist). 0: only the ~25-byte timing stamp, four search terms.
    #[arg(long, default_value_t = 0)]
    pub text_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = sys::raise_nofile() {
        eprintln!("rtm-bench: cannot raise the open-file limit: {e:#}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtm-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let common = match &cli.command {
        Command::Capacity(a) => Some(&a.common),
        Command::Fanout(a) => Some(&a.common),
        Command::Dm(a) => Some(&a.common),
        Command::Persist(a) => Some(&a.common),
        Command::Reconnect(a) => Some(&a.common),
        Command::Search(a) => Some(&a.common),
        Command::Floor(_) | Command::Plot(_) => None,
    };
    // Every result line says what the database held before the load (see history.rs).
    let history = common.filter(|c| c.history > 0).map(
        |c| serde_json::json!({ "messages": c.history, "rooms": c.history_rooms, "accounts": c.history_accounts }),
    );
    let (max_runtime, json) = match (&cli.command, common) {
        (_, Some(c)) => (c.max_runtime, c.json),
        (Command::Floor(a), None) => (a.max_runtime, a.json),
        _ => (600, false),
    };
    let result = rt.block_on(async move {
        let work = async move {
            match cli.command {
                Command::Capacity(a) => capacity::run(a).await,
                Command::Fanout(a) => fanout::run(a).await,
                Command::Dm(a) => dm::run(a).await,
                Command::Persist(a) => persist::run(a).await,
                Command::Reconnect(a) => reconnect::run(a).await,
                Command::Search(a) => search::run(a).await,
                Command::Floor(a) => floor::run(a).await,
                Command::Plot(a) => plot::run(a),
            }
        };
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(max_runtime), work) => match r {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("gave up after --max-runtime {max_runtime} s")),
            },
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Client tasks still running are dropped with the runtime; a spawned server was
    // already stopped when its Target was dropped.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(mut outcome) => {
            if let (Some(h), Some(p)) = (history, outcome.params.as_object_mut()) {
                p.insert("history".into(), h);
            }
            if let (Some(s), Some(p)) = (cluster::POSTGRES_SETTINGS.get(), outcome.params.as_object_mut()) {
                p.insert("postgres".into(), s.clone());
            }
            outcome.emit(json);
            if outcome.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("rtm-bench: {e:#}");
            println!("{}", serde_json::json!({ "ok": false, "error": format!("{e:#}") }));
            ExitCode::from(2)
        }
    }
}
