//! A throwaway PostgreSQL server on a loopback port, for tests and the development setup: the
//! machine's own PostgreSQL binaries (Debian's `postgresql-15`), a fresh cluster in a given
//! directory, started with `pg_ctl -w` (which returns once the server accepts connections) and
//! stopped when dropped. `initdb` refuses to run as root, so as root the cluster belongs to the
//! `postgres` user and every command runs through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The role tests connect as (trust authentication on loopback only).
pub const ROLE: &str = "infhub";

/// A running throwaway server.
#[derive(Debug)]
pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// The loopback port it listens on (0 while stopped).
    pub port: u16,
    /// The port it listened on before [`LocalPostgres::stop`].
    stopped_port: u16,
}

/// Why the server could not be started.
#[derive(Debug)]
pub enum ServerError {
    /// No PostgreSQL binaries under `/usr/lib/postgresql/*/bin`.
    NotInstalled,
    /// A command failed.
    Command(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::NotInstalled => f.write_str("no PostgreSQL binaries under /usr/lib/postgresql/*/bin"),
            ServerError::Command(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ServerError {}

/// The newest installed PostgreSQL's binary directory.
pub fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn free_port() -> Result<u16, ServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ServerError::Command(format!("port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| ServerError::Command(format!("port: {e}")))
}

fn is_root() -> bool {
    // The effective user's home is no guide; `id -u` is.
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl LocalPostgres {
    /// Creates a cluster in `dir/pgdata` (which must not exist) and starts it on a free
    /// loopback port; returns once it accepts connections.
    pub fn start(dir: &Path) -> Result<LocalPostgres, ServerError> {
        let bin = binaries().ok_or(ServerError::NotInstalled)?;
        let as_postgres = is_root();
        let data = dir.join("pgdata");
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir), "chown")?;
        }
        let mut server = LocalPostgres { bin, data, as_postgres, port: 0, stopped_port: 0 };
        let data_arg = server.data.display().to_string();
        server.run_pg("initdb", &["-D", &data_arg, "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        server.start_on_free_port(dir)?;
        Ok(server)
    }

    /// Creates a streaming standby of this server in `dir/pgdata` (a base backup that follows
    /// the primary, `pg_basebackup -R`) and starts it on a free loopback port, named
    /// `application_name` in the primary's `pg_stat_replication`.
    pub fn start_standby(&self, dir: &Path, application_name: &str) -> Result<LocalPostgres, ServerError> {
        if self.as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir), "chown")?;
        }
        let mut standby = LocalPostgres {
            bin: self.bin.clone(),
            data: dir.join("pgdata"),
            as_postgres: self.as_postgres,
            port: 0,
            stopped_port: 0,
        };
        let data_arg = standby.data.display().to_string();
        let primary = format!("host=127.0.0.1 port={} user={ROLE} application_name={application_name}", self.port);
        standby.run_pg("pg_basebackup", &["-D", &data_arg, "-R", "-X", "stream", "-d", &primary, "--no-sync"])?;
        standby.start_on_free_port(dir)?;
        Ok(standby)
    }

    /// A primary in `dir/primary` and a streaming standby in `dir/standby` that the primary
    /// commits to synchronously (`synchronous_standby_names`); returns once the primary lists
    /// the standby as synchronous. Call it off any async runtime's threads (it uses the
    /// synchronous client).
    pub fn start_with_synchronous_standby(dir: &Path) -> Result<(LocalPostgres, LocalPostgres), ServerError> {
        let (primary_dir, standby_dir) = (dir.join("primary"), dir.join("standby"));
        for d in [&primary_dir, &standby_dir] {
            std::fs::create_dir_all(d).map_err(|e| ServerError::Command(format!("create {}: {e}", d.display())))?;
        }
        let primary = LocalPostgres::start(&primary_dir)?;
        let standby = primary.start_standby(&standby_dir, "standby1")?;
        let sql = |what: &str, e: postgres::Error| ServerError::Command(format!("{what}: {e}"));
        let mut admin = postgres::Client::connect(&primary.url(), postgres::NoTls).map_err(|e| sql("connect", e))?;
        // ALTER SYSTEM cannot run in a transaction block: one statement per call.
        admin
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
            .map_err(|e| sql("configure the synchronous standby", e))?;
        admin.batch_execute("SELECT pg_reload_conf()").map_err(|e| sql("reload the configuration", e))?;
        // Readiness: the primary lists the standby as synchronous.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let rows = admin
                .query("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'", &[])
                .map_err(|e| sql("read pg_stat_replication", e))?;
            if !rows.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(ServerError::Command("the standby never became synchronous".into()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok((primary, standby))
    }

    fn start_on_free_port(&mut self, dir: &Path) -> Result<(), ServerError> {
        let data_arg = self.data.display().to_string();
        for _ in 0..5 {
            self.port = free_port()?;
            let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, data_arg);
            let log = dir.join("postgres.log").display().to_string();
            let start = ["-D", &data_arg, "-l", &log, "-o", &options, "-w", "-t", "60", "start"];
            if self.run_pg("pg_ctl", &start).is_ok() {
                return Ok(());
            }
            // The port was taken between the probe and the start: another one.
        }
        self.port = 0;
        Err(ServerError::Command(format!("postgres did not start; see {}", dir.join("postgres.log").display())))
    }

    /// Stops the server now (fast shutdown); dropping it afterwards does nothing more.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        let data = self.data.display().to_string();
        let r = self.run_pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
        if self.port != 0 {
            self.stopped_port = self.port;
        }
        self.port = 0;
        r
    }

    /// Starts a stopped server again on the port it had (its clients reconnect to the same
    /// address), logging to `log`; returns once it accepts connections.
    pub fn start_again(&mut self, log: &Path) -> Result<(), ServerError> {
        if self.stopped_port == 0 {
            return Err(ServerError::Command("start_again: the server was not stopped".into()));
        }
        let data_arg = self.data.display().to_string();
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.stopped_port, data_arg);
        let log = log.display().to_string();
        self.run_pg("pg_ctl", &["-D", &data_arg, "-l", &log, "-o", &options, "-w", "-t", "60", "start"])?;
        self.port = self.stopped_port;
        Ok(())
    }

    /// A connection string for the `postgres` database as [`ROLE`].
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user={ROLE} dbname=postgres", self.port)
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<(), ServerError> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args);
        run(&mut cmd, tool)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), ServerError> {
    let out = cmd.output().map_err(|e| ServerError::Command(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServerError::Command(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if self.port == 0 {
            return; // stopped already, or never started
        }
        let data = self.data.display().to_string();
        if let Err(e) = self.run_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]) {
            tracing::warn!(error = %e, "could not stop the throwaway postgres");
        }
    }
}
