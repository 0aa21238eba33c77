//! The test PostgreSQL itself: it starts as an unprivileged user on a free loopback port,
//! serves a real client, keeps committed data across an immediate (crash-like) stop and a
//! restart, and is gone after it is dropped. Needs PostgreSQL's binaries
//! (`tests.d/setup/postgresql.sh`); without them this fails, it does not skip.

#![allow(clippy::unwrap_used)]

use amberdb_postgres::testing::TempPostgres;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[test]
fn a_temporary_postgresql_serves_keeps_committed_rows_across_an_immediate_stop_and_goes_away() {
    let mut pg = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let url = pg.url();
    let data = pg.data_dir();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = connect(&url).await.unwrap();
        let who: String = c
            .query_one("SELECT current_user", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, amberdb_postgres::testing::USER);
        c.batch_execute(
            "CREATE TABLE t (k text PRIMARY KEY, v bigint); INSERT INTO t VALUES ('a', 1)",
        )
        .await
        .unwrap();
    });
    pg.stop_immediate().unwrap();
    let refused = rt.block_on(connect(&url));
    assert!(
        refused.is_err(),
        "a stopped server still accepted a connection"
    );
    pg.restart().unwrap();
    rt.block_on(async {
        let c = connect(&url).await.unwrap();
        let v: i64 = c
            .query_one("SELECT v FROM t WHERE k = 'a'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 1, "a committed row was lost across an immediate stop");
    });
    drop(pg);
    assert!(!data.exists(), "{} is left behind", data.display());
    assert!(
        rt.block_on(connect(&url)).is_err(),
        "the server outlived its handle"
    );
}
