//! The `rtm` binary: parse the config, set up logging, then serve (the default) or run
//! an admin command (accounts, `backup`) against the same database. Thin on purpose: everything else is in
//! the library, shared with the tests.

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
        #[arg(long)]
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
}

fn main() -> anyhow::Result<()> {
    limit_heap_retention();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(start())
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
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.config.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    // `--log-format json`: one JSON object per line, for log shippers.
    match cli.config.log_format {
        rtm::config::LogFormat::Text => logs.init(),
        rtm::config::LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::User(cmd)) => user(cli.config, cmd).await,
        Some(Command::Backup { path }) => backup(cli.config, path).await,
    }
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

async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let state = AppState::build(&config).await.context("cannot open the database")?;
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
                .register(NewAccount { first_name, last_name, email, username, password, invite: None }, true)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.public_message(), e.code()))?;
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
        UserCommand::Disable { login } | UserCommand::Enable { login } if login.is_empty() => {
            anyhow::bail!("name a user")
        }
        UserCommand::Disable { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.set_disabled(u.id, true).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("disabled {} (id {}); their sessions are ended", u.username, u.id);
        }
        UserCommand::Enable { login } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            chat.set_disabled(u.id, false).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("enabled {} (id {})", u.username, u.id);
        }
        UserCommand::Token { login, name } => {
            let u = chat.find_user(&login).await.map_err(|e| anyhow::anyhow!("{login}: {e}"))?;
            let (_, token) = chat.create_api_token(u.id, &name).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
        }
    }
    Ok(())
}
