//! Several nodes of the real server sharing one PostgreSQL database and one Redis (the
//! clustered mode): each node is an in-process `rtm::serve` on its own port, as in
//! `TestServer`, with `--bus redis://…` and a key prefix of its own, so tests running
//! in parallel processes on one Redis never see each other's channels or presence.

use rtm::Config;

use super::{Backend, TestServer, fresh_pg_database};

/// The Redis started by scripts/test.
pub fn redis_url() -> String {
    std::env::var("RTM_TEST_REDIS_URL")
        .expect("RTM_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis")
}

/// A random key prefix for one cluster.
pub fn fresh_prefix() -> String {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("random");
    format!("rtmt{}", hex::encode(rnd))
}

pub struct Cluster {
    pub nodes: Vec<TestServer>,
    /// The shared database, bus and prefix (what another node would be started with).
    pub database: String,
    pub bus: String,
    pub prefix: String,
}

impl Cluster {
    /// Starts `n` nodes on one fresh PostgreSQL database and the test Redis.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes; `tweak` may change each node's config (called once per node).
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Config)) -> Self {
        let database = fresh_pg_database().await;
        let bus = redis_url();
        let prefix = fresh_prefix();
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let (d, b, p) = (database.clone(), bus.clone(), prefix.clone());
            nodes.push(
                TestServer::start_with(Backend::Postgres, |c| {
                    c.database = Some(d);
                    c.bus = Some(b);
                    c.bus_prefix = p;
                    tweak(c);
                })
                .await,
            );
        }
        Cluster { nodes, database, bus, prefix }
    }

    /// The config a further node (or a node started as a separate process) would use.
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--database".into(),
            self.database.clone(),
            "--bus".into(),
            self.bus.clone(),
            "--bus-prefix".into(),
            self.prefix.clone(),
        ]
    }
}
