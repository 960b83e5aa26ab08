/* SQLite's own CPU for storing DM messages, with RT Messenger's schema and nothing
 * else: no server, no sqlx, no sockets. A lower bound under the server's cost of a DM
 * (issue 16, BENCHMARKS.md round 18): each commit is BEGIN IMMEDIATE, per message the
 * seq UPDATE of its room and its INSERT (the server's statements, simplified: no
 * retry lookup, no trim), then COMMIT, with statements prepared once and reused. Only
 * the commits are timed (this thread's CPU clock); the WAL is checkpointed between
 * them, untimed, as the server does it off the path. Built and run by
 * scripts/bench-store-floor against the SQLite that libsqlite3-sys bundles.
 * Usage: store-floor DB MESSAGES BATCH */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "sqlite3.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void check(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql) { check(sqlite3_exec(db, sql, 0, 0, 0), db, sql); }

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    check(sqlite3_prepare_v2(db, sql, -1, &s, 0), db, sql);
    return s;
}

static void run(sqlite3_stmt *s, sqlite3 *db, const char *what) {
    check(sqlite3_step(s), db, what);
    sqlite3_reset(s);
}

#define MAX_PAIRS 100000

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: store-floor DB MESSAGES BATCH\n");
        return 2;
    }
    int n = atoi(argv[2]), batch = atoi(argv[3]);
    if (n <= 0 || batch <= 0) return 2;
    sqlite3 *db;
    check(sqlite3_open(argv[1], &db), db, "open");
    /* The server's writer connection (src/store/sqlite.rs `setup`). */
    exec(db, "PRAGMA journal_mode = WAL");
    exec(db, "PRAGMA synchronous = NORMAL");
    exec(db, "PRAGMA foreign_keys = ON");
    exec(db, "PRAGMA wal_autocheckpoint = 0");

    /* Every (DM, member) pair: a message goes into the DM, written by the member. */
    static long long room[MAX_PAIRS], author[MAX_PAIRS], last[MAX_PAIRS];
    static int slot[MAX_PAIRS]; /* the pair whose `last` is its room's (rows come by room) */
    int pairs = 0;
    sqlite3_stmt *q = prepare(db, "SELECT r.id, m.user_id, r.last_seq FROM rooms r JOIN memberships m ON m.room_id = r.id "
                                  "WHERE r.kind = 'dm' ORDER BY r.id, m.user_id");
    while (sqlite3_step(q) == SQLITE_ROW && pairs < MAX_PAIRS) {
        room[pairs] = sqlite3_column_int64(q, 0);
        author[pairs] = sqlite3_column_int64(q, 1);
        last[pairs] = sqlite3_column_int64(q, 2);
        slot[pairs] = (pairs > 0 && room[pairs - 1] == room[pairs]) ? slot[pairs - 1] : pairs;
        pairs++;
    }
    sqlite3_finalize(q);
    if (pairs == 0) {
        fprintf(stderr, "no DMs in %s\n", argv[1]);
        return 1;
    }

    sqlite3_stmt *begin = prepare(db, "BEGIN IMMEDIATE");
    sqlite3_stmt *seq = prepare(db, "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ?");
    sqlite3_stmt *ins = prepare(db, "INSERT INTO messages (room_id, seq, author_id, kind, body, client_id, created_at, "
                                    "target_seq, reply_to, search_text) VALUES (?, ?, ?, 'text', ?, ?, ?, NULL, NULL, ?)");
    sqlite3_stmt *commit = prepare(db, "COMMIT");
    /* 100 bytes, as `rtm-bench --text-bytes 100` writes them. */
    const char *text = "t=1796276435718787;15;1;coffee notes friday tests it notes looks lunch the again lorem ipsum dolor ab";
    char client_id[32];
    double spent = 0;
    int done = 0, j = 0;
    while (done < n) {
        double t0 = cpu_now();
        run(begin, db, "begin");
        for (int x = 0; x < batch; x++, j++) {
            int p = (int)(((long long)j * 7919) % pairs); /* spread over the DMs */
            sqlite3_bind_int64(seq, 1, room[p]);
            run(seq, db, "seq");
            long long s = ++last[slot[p]]; /* one writer: the seq is known, as the server knows it */
            sqlite3_bind_int64(ins, 1, room[p]);
            sqlite3_bind_int64(ins, 2, s);
            sqlite3_bind_int64(ins, 3, author[p]);
            sqlite3_bind_text(ins, 4, text, 100, SQLITE_STATIC);
            snprintf(client_id, sizeof client_id, "floor-%d", j);
            sqlite3_bind_text(ins, 5, client_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(ins, 6, 1796276435719LL + j);
            sqlite3_bind_text(ins, 7, text, 100, SQLITE_STATIC);
            run(ins, db, "insert");
        }
        run(commit, db, "commit");
        spent += cpu_now() - t0;
        done += batch;
        if (done % 2000 < batch) exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
    }
    printf("{\"workload\":\"store-floor\",\"dm_members\":%d,\"messages\":%d,\"batch\":%d,"
           "\"cpu_us_per_message\":%.2f,\"cpu_us_per_commit\":%.2f,\"sqlite\":\"%s\"}\n",
           pairs, done, batch, spent / done * 1e6, spent / (done / batch) * 1e6, sqlite3_libversion());
    sqlite3_close(db);
    return 0;
}
