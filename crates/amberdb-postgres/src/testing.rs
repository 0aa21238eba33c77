//! [`TempPostgres`]: a real PostgreSQL server for tests, in a temporary directory, on a free
//! loopback port, as an unprivileged user, stopped (and its directory removed) when dropped.
//!
//! The binaries are Debian's (`tests.d/setup/postgresql.sh` installs the `postgresql`
//! package when they are missing): `$AMBERDB_PG_BIN` when set, else the newest
//! `/usr/lib/postgresql/<version>/bin`, else `initdb` and `pg_ctl` on `PATH`. PostgreSQL
//! refuses to run as root, so as root every server command runs as the `postgres` user the
//! package creates (through `runuser`), and the directory is handed to that user. The
//! cluster trusts connections on loopback (`--auth=trust`): a test server, never a
//! deployment. A start that fails says why (the server log is included): tests that need
//! PostgreSQL fail without it, they never skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The database role tests connect as (the cluster's superuser).
pub const USER: &str = "amberdb";

/// A running temporary PostgreSQL server.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The user the server runs as, when this process is root.
    run_as: Option<&'static str>,
    port: u16,
    running: bool,
}

/// How long `pg_ctl` waits for a start or a stop.
const PG_CTL_WAIT: Duration = Duration::from_secs(60);

impl TempPostgres {
    /// Creates a cluster in a new temporary directory and starts it.
    pub fn start() -> Result<TempPostgres, String> {
        let bin = find_bin()?;
        let run_as = if is_root() { Some("postgres") } else { None };
        let dir = tempfile::Builder::new()
            .prefix("amberdb-pg-")
            .tempdir()
            .map_err(|e| format!("creating a directory for PostgreSQL: {e}"))?;
        if let Some(user) = run_as {
            let (uid, gid) = user_ids(user)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to {user}: {e}", dir.path().display()))?;
        }
        let mut pg = TempPostgres {
            dir,
            bin,
            run_as,
            port: 0,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-instructions".as_ref(),
            ],
        )?;
        // A port taken between our probe and the server's bind fails the start: try others.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A connection string for `tokio_postgres::connect` (database `postgres`).
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname=postgres",
            self.port
        )
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint, the WAL
    /// is replayed on the next start).
    pub fn stop_immediate(&mut self) -> Result<(), String> {
        self.stop_mode("immediate")
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`).
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop_mode("fast")
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.running {
            self.stop()?;
        }
        self.start_server()
    }

    fn start_server(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.log_file();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let wait = PG_CTL_WAIT.as_secs().to_string();
        let started = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                wait.as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        match started {
            Ok(()) => {
                self.running = true;
                Ok(())
            }
            Err(e) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                Err(format!("{e}\nserver log:\n{log}"))
            }
        }
    }

    fn stop_mode(&mut self, mode: &str) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let wait = PG_CTL_WAIT.as_secs().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                wait.as_ref(),
                "stop".as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Runs one of the server's programs (as the server's user when we are root).
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(self.dir.path());
        let out = cmd
            .output()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {:?} failed ({}): {}{}",
                exe.display(),
                args,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.stop_immediate();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|e| format!("id {flag} {user}: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                format!(
                    "no user {user:?} to run PostgreSQL as (run tests.d/setup/postgresql.sh, \
                     which installs Debian's postgresql package and its user)"
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("AMBERDB_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !(dir.join("pg_ctl").exists() && dir.join("initdb").exists()) {
            return Err(format!(
                "AMBERDB_PG_BIN={} holds no initdb and pg_ctl",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("pg_ctl").exists() && d.join("initdb").exists())
        .ok_or_else(|| {
            "PostgreSQL's initdb and pg_ctl were not found (set AMBERDB_PG_BIN, or run \
             tests.d/setup/postgresql.sh)"
                .to_string()
        })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}
