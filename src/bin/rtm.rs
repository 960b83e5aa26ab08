//! The `rtm` binary: parse the config, set up logging, then serve (the default) or run
//! an admin command (accounts, rooms, the audit log, `backup`) against the same
//! database. Thin on purpose: every admin command calls the same `Chat` function as
//! the web console (recorded in the audit log with no actor: the CLI), and everything
//! else is in the library, shared with the tests.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtm::{AppState, Config, chat::NewAccount};
use tokio::net::TcpListener;

/// RT Messenger: a self-hosted real-time chat server.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket (the default when no command is given).
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage rooms (public and private; not DMs).
    #[command(subcommand)]
    Room(RoomCommand),
    /// Show the audit log of admin actions, newest first.
    Audit {
        /// How many entries (1 to 200; other values are clamped to that range).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Copy the SQLite database into a new file PATH while the server keeps running
    /// (one consistent snapshot; see docs/DEPLOY.md for restoring it). PostgreSQL and
    /// MariaDB: use pg_dump / mariadb-dump instead.
    Backup { path: std::path::PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account (works whatever the registration mode).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
        /// The password; prefer --password-stdin so it stays out of shell history.
        #[arg(long, env = "RTM_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Disable an account (by username or email): ends its sessions and closes its sockets.
    Disable { login: String },
    /// Re-enable a disabled account.
    Enable { login: String },
    /// Make an API token for an account (printed once).
    Token {
        login: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Make an account an admin.
    Promote { login: String },
    /// Take the admin role from an account (refused if it is the last admin).
    Demote { login: String },
    /// Print a single-use password reset link for an account (valid 24 hours).
    ResetLink { login: String },
    /// End every sign-in session of an account and close its sockets.
    EndSessions { login: String },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// List rooms with their owners and member counts.
    List {
        /// Only rooms whose name or topic contains this.
        #[arg(long)]
        query: Option<String>,
    },
    /// Archive a room (by name or id): readable, nobody can post.
    Archive { room: String },
    /// Let people post in an archived room again.
    Unarchive { room: String },
    /// Delete a room (by name or id) with all its messages.
    Delete { room: String },
}

fn main() -> std::process::ExitCode {
    limit_heap_retention();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(start()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the causes, never a backtrace (an operator's shell may
            // have RUST_BACKTRACE set; the trace says nothing they can act on).
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold after big blocks are freed, so each Argon2 hash
/// (19 MiB) would then come from, and stay in, a thread's heap: hundreds of MB after a
/// burst of sign-ins. A fixed 1 MiB threshold sends big blocks to mmap, given back to
/// the OS when freed (measured: 617 MB → 14 MB RSS after 300 sign-ups).
fn limit_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn start() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let mut cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.config.log);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(match &filter {
            Ok(f) => f.clone(),
            Err(_) => tracing_subscriber::EnvFilter::new("info"),
        })
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // `--log-format json`: one JSON object per line, for log shippers.
    match cli.config.log_format {
        rtm::config::LogFormat::Text => logs.init(),
        rtm::config::LogFormat::Json => logs.json().init(),
    }
    if let Err(e) = filter {
        tracing::warn!(error = %e, "--log is not a valid filter; logging at info");
    }
    let serving = matches!(cli.command, None | Some(Command::Serve));
    if !serving {
        // `--registration` is the server's start-up choice: a CLI command run with
        // the server's flags or environment must not rewrite the stored mode.
        cli.config.registration = None;
    }
    if !serving && !matches!(cli.command, Some(Command::User(UserCommand::Add { .. }))) {
        existing_database(&cli.config)?;
    }
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::User(cmd)) => user(cli.config, cmd).await,
        Some(Command::Room(cmd)) => room(cli.config, cmd).await,
        Some(Command::Audit { limit }) => audit(cli.config, limit).await,
        Some(Command::Backup { path }) => backup(cli.config, path).await,
    }
}

/// An admin command on a SQLite file that is not there is a mistyped `--data-dir`, not
/// a new server: refused rather than answered from a new, empty database. (`serve`
/// and `user add`, which may make the first admin before the first start, create it.)
fn existing_database(config: &Config) -> anyhow::Result<()> {
    let url = config.database_url();
    if let Some(path) = rtm::store::sqlite::file_of(&url)
        && !path.is_empty()
        && !path.contains(":memory:")
        && !std::path::Path::new(path).exists()
    {
        anyhow::bail!("no database at {path}: give the server's --data-dir (or --database)");
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(config = ?config, "starting");
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    rtm::run(config, listener, rtm::shutdown::signal()).await.context("cannot start")?;
    Ok(())
}

async fn backup(config: Config, path: std::path::PathBuf) -> anyhow::Result<()> {
    let url = config.database_url();
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "rtm backup copies a SQLite database; for {} use pg_dump or mariadb-dump (docs/DEPLOY.md, \"Backups\")",
            rtm::config::redact_url(&url)
        );
    }
    let started = std::time::Instant::now();
    rtm::store::sqlite::backup(&url, &path).await.with_context(|| format!("cannot back up into {}", path.display()))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("backed up to {} ({size} bytes, {} ms)", path.display(), started.elapsed().as_millis());
    Ok(())
}

/// A chat error as the CLI reports it: the message and the stable code.
fn fail(e: rtm::chat::ChatError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.public_message(), e.code())
}

async fn room(config: Config, cmd: RoomCommand) -> anyhow::Result<()> {
    let state = AppState::build_for_cli(&config).await.context("cannot open the database")?;
    let chat = &state.chat;
    let named = |room: &str| {
        let room = room.to_string();
        async move { chat.room_id_for(&room).await.map_err(|e| anyhow::anyhow!("{room}: {}", e.public_message())) }
    };
    match cmd {
        RoomCommand::List { query } => {
            println!("{:>6}  {:<24} {:<8} {:<24} {:>7}  state", "id", "name", "private", "owner", "members");
            let mut offset = 0;
            loop {
                let (rooms, total) = chat
                    .admin_rooms(None, query.as_deref(), offset, rtm::chat::page(None, Some(200)).1)
                    .await
                    .map_err(fail)?;
                for r in &rooms {
                    println!(
                        "{:>6}  {:<24} {:<8} {:<24} {:>7}  {}",
                        r.room.id,
                        r.room.name.as_deref().unwrap_or(""),
                        if r.room.is_private { "yes" } else { "" },
                        r.owner_username.as_deref().unwrap_or("-"),
                        r.members,
                        if r.room.archived { "archived" } else { "active" }
                    );
                }
                offset += rooms.len() as i64;
                if rooms.is_empty() || offset >= total {
                    break;
                }
            }
        }
        RoomCommand::Archive { room } => {
            let id = named(&room).await?;
            chat.set_archived(None, id, true).await.map_err(fail)?;
            println!("archived room {id}");
        }
        RoomCommand::Unarchive { room } => {
            let id = named(&room).await?;
            chat.set_archived(None, id, false).await.map_err(fail)?;
            println!("unarchived room {id}");
        }
        RoomCommand::Delete { room } => {
            let id = named(&room).await?;
            chat.delete_room(None, id).await.map_err(fail)?;
            println!("deleted room {id} and its messages");
        }
    }
    Ok(())
}

async fn audit(config: Config, limit: i64) -> anyhow::Result<()> {
    let state = AppState::build_for_cli(&config).await.context("cannot open the database")?;
    let entries = state.chat.audit_log(None, None, limit).await.map_err(fail)?;
    println!("{:>6}  {:<29} {:<16} {:<22} {:<20} detail", "id", "time", "actor", "action", "target");
    for e in entries {
        let when = utc(e.ts);
        let actor = e.actor.map(|(_, name)| name).unwrap_or_else(|| "(cli)".into());
        println!("{:>6}  {:<29} {:<16} {:<22} {:<20} {}", e.id, when, actor, e.action, e.target, e.detail);
    }
    Ok(())
}

/// Unix milliseconds as an HTTP date (`Mon, 30 Nov 2026 18:02:03 GMT`).
fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let state = AppState::build_for_cli(&config).await.context("cannot open the database")?;
    let chat = &state.chat;
    match cmd {
        UserCommand::Add { email, username, first_name, last_name, password, password_stdin } => {
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("cannot read the password")?;
                s.trim_end_matches(['\r', '\n']).to_string()
            } else {
                password.context("give --password-stdin or --password")?
            };
            let u = chat
                .admin_add_user(None, NewAccount { first_name, last_name, email, username, password, invite: None })
                .await
                .map_err(fail)?;
            println!("created user {} (id {}){}", u.username, u.id, if u.is_admin { ", admin" } else { "" });
        }
        UserCommand::List => {
            println!("{:>6}  {:<24} {:<32} {:<5} status", "id", "username", "email", "admin");
            for u in chat.list_all_users(100_000).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!(
                    "{:>6}  {:<24} {:<32} {:<5} {}",
                    u.id,
                    u.username,
                    u.email,
                    if u.is_admin { "yes" } else { "" },
                    if u.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Disable { login }
        | UserCommand::Enable { login }
        | UserCommand::Promote { login }
        | UserCommand::Demote { login }
        | UserCommand::ResetLink { login }
        | UserCommand::EndSessions { login }
            if login.is_empty() =>
        {
            anyhow::bail!("name a user")
        }
        UserCommand::Disable { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.admin_disable(None, u.id, true).await.map_err(fail)?;
            println!("disabled {} (id {}); their sessions are ended", u.username, u.id);
        }
        UserCommand::Enable { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.admin_disable(None, u.id, false).await.map_err(fail)?;
            println!("enabled {} (id {})", u.username, u.id);
        }
        UserCommand::Promote { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.set_admin(None, u.id, true).await.map_err(fail)?;
            println!("{} (id {}) is an admin", u.username, u.id);
        }
        UserCommand::Demote { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.set_admin(None, u.id, false).await.map_err(fail)?;
            println!("{} (id {}) is no longer an admin", u.username, u.id);
        }
        UserCommand::ResetLink { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            let link = chat.issue_reset_link(None, u.id).await.map_err(fail)?;
            println!("{}/?reset={}", chat.policy.origin, link.code);
            eprintln!("single use, valid 24 hours: give it to {} only", u.username);
        }
        UserCommand::EndSessions { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.end_user_sessions(None, u.id).await.map_err(fail)?;
            println!("ended every session of {} (id {})", u.username, u.id);
        }
        UserCommand::Token { login, name } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            let token = chat.cli_api_token(&u, &name).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
        }
    }
    Ok(())
}
