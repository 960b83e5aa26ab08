//! Property test of the delivery contract's core: per-room sequence numbers, the
//! "keep last N" retention and resume, driven through the real `Chat` and store against
//! a simple in-memory model. Each case is a random series of sends, retention changes,
//! resumes and history reads on a fresh room; both backends run it.

mod common;

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use common::Backend;
use proptest::{prelude::*, test_runner::TestRunner};
use rtm::{
    AppState, Config,
    chat::{Actor, CreateRoom, NewAccount, Resume, RoomUpdate},
    domain::Retention,
};

#[derive(Debug, Clone)]
enum Op {
    Send(u8),
    Keep(i64),
    /// Resume after `last_seq - back` (may be negative: clamped at 0, or beyond the end).
    Resume(i64),
    History(Option<i64>, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Send),
        1 => (1i64..8).prop_map(Op::Keep),
        3 => (-2i64..12).prop_map(Op::Resume),
        2 => (proptest::option::of(0i64..20), 1u32..6).prop_map(|(b, l)| Op::History(b, l)),
    ]
}

/// What the server should hold: the room's last seq and the kept (seq, text).
struct Model {
    last_seq: i64,
    keep: i64,
    kept: BTreeMap<i64, String>,
}

impl Model {
    fn prune(&mut self) {
        let cut = self.last_seq - self.keep;
        self.kept.retain(|s, _| *s > cut);
    }
}

static ROOMS: AtomicUsize = AtomicUsize::new(0);

async fn check(state: &AppState, actor: &Actor, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let chat = &state.chat;
    let n = ROOMS.fetch_add(1, Ordering::Relaxed);
    let create = CreateRoom {
        name: format!("model-{n}"),
        topic: String::new(),
        private: false,
        retention: Some(Retention::last_messages(5)),
    };
    let room = chat.create_room(actor, create).await.map_err(|e| TestCaseError::fail(e.to_string()))?.id;
    let mut m = Model { last_seq: 0, keep: 5, kept: BTreeMap::new() };
    let mut sent = 0;
    for op in ops {
        match op {
            Op::Send(k) => {
                for _ in 0..k {
                    sent += 1;
                    let text = format!("m{sent}");
                    let receipt = chat
                        .send(actor, room, &format!("c{sent}"), &text, None)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let (seq, dup) = receipt.wait().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    m.last_seq += 1;
                    prop_assert_eq!(seq, Some(m.last_seq), "seq grows by one");
                    prop_assert!(!dup);
                    m.kept.insert(m.last_seq, text);
                    m.prune();
                }
                prop_assert_eq!(chat.store().count_messages(room).await.unwrap(), m.kept.len() as i64);
            }
            Op::Keep(k) => {
                let u = RoomUpdate { retention: Some(Retention::last_messages(k)), ..Default::default() };
                chat.update_room(actor, room, u).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.keep = k;
                m.prune();
                prop_assert_eq!(chat.store().count_messages(room).await.unwrap(), m.kept.len() as i64);
            }
            Op::Resume(back) => {
                let after = (m.last_seq - back).max(0);
                let got = chat.resume(actor, room, after).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let earliest = m.kept.keys().next().copied();
                let expect_gap = after < m.last_seq && earliest.is_none_or(|e| e > after + 1);
                match got {
                    Resume::Gap { earliest_seq, last_seq } => {
                        prop_assert!(
                            expect_gap,
                            "unexpected gap after {} (kept {:?})",
                            after,
                            m.kept.keys().collect::<Vec<_>>()
                        );
                        prop_assert_eq!(earliest_seq, earliest);
                        prop_assert_eq!(last_seq, m.last_seq);
                    }
                    Resume::Events { events, last_seq, more } => {
                        prop_assert!(!expect_gap, "missing gap after {}", after);
                        prop_assert!(!more);
                        prop_assert_eq!(last_seq, m.last_seq);
                        let want: Vec<(i64, String)> =
                            m.kept.range(after + 1..).map(|(s, t)| (*s, t.clone())).collect();
                        let got: Vec<(i64, String)> =
                            events.into_iter().map(|e| (e.seq.unwrap_or(-1), e.text)).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
            Op::History(before, limit) => {
                let (events, more) = chat
                    .history(actor, room, before, Some(limit))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let older: Vec<(i64, String)> =
                    m.kept.range(..before.unwrap_or(i64::MAX)).map(|(s, t)| (*s, t.clone())).collect();
                let want = &older[older.len().saturating_sub(limit as usize)..];
                let got: Vec<(i64, String)> = events.into_iter().map(|e| (e.seq.unwrap_or(-1), e.text)).collect();
                prop_assert_eq!(&got[..], want);
                prop_assert_eq!(more, older.len() > limit as usize);
            }
        }
    }
    Ok(())
}

fn run_model(backend: Backend, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (state, actor) = rt.block_on(async {
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.rate_messages_per_10s = 1_000_000;
        config.rate_social_per_min = 1_000_000;
        match backend {
            Backend::Postgres => config.database = Some(common::fresh_pg_database().await),
            Backend::Mysql => config.database = Some(common::fresh_mysql_database().await),
            Backend::Sqlite | Backend::Cluster => {}
        }
        let state = AppState::build(&config).await.unwrap();
        let account = NewAccount {
            first_name: "Model".into(),
            last_name: "Checker".into(),
            email: "model@example.org".into(),
            username: "model".into(),
            password: "model-password".into(),
            invite: None,
        };
        let user = state.chat.register(account, true).await.unwrap();
        (state, Actor { user, session: None, token_id: None })
    });
    let mut runner = TestRunner::new(ProptestConfig { cases, ..ProptestConfig::default() });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| rt.block_on(check(&state, &actor, ops)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn sequence_retention_resume_model_sqlite() {
    run_model(Backend::Sqlite, 64);
}

#[test]
fn sequence_retention_resume_model_postgres() {
    run_model(Backend::Postgres, 32);
}

#[test]
fn sequence_retention_resume_model_mysql() {
    run_model(Backend::Mysql, 32);
}
