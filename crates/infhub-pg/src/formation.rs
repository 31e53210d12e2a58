//! A throwaway pg_auto_failover formation on loopback ports, for the failover tests and the
//! development setup (issue 23): a monitor, a primary and two standbys, each a real
//! `pg_autoctl run` process (Debian's `pg-auto-failover-cli` and `postgresql-15-auto-failover`)
//! with its own PostgreSQL. The formation requires one synchronous standby
//! (`number_sync_standbys = 1`, so the primary commits to `ANY 1` of the two), and the monitor
//! acts within seconds instead of its production defaults (tens of seconds), so a test of a
//! killed primary finishes quickly. The hub connects with a multi-host URL that targets the
//! read-write node ([`LocalFormation::url`]), so after a failover it finds the new primary by
//! itself.
//!
//! As root, every command runs as the `postgres` user (`initdb` refuses root); each node's
//! `pg_autoctl run` leads a process group of its own so that [`LocalFormation::kill_node`] can
//! kill a whole machine's worth of processes at once, the way a crash would.

use crate::server::{binaries, ServerError};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database nodes of a formation (one primary and two standbys).
pub const NODES: usize = 3;
/// The superuser of each node's cluster (`pg_autoctl` initialises them as the `postgres` user).
pub const ROLE: &str = "postgres";
/// Longest wait for the formation to form, or for a failover to finish.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The monitor's timing (milliseconds): health checks every second, a node unhealthy after
/// three seconds of silence, and the old primary's demotion assumed after three more.
const MONITOR_SETTINGS: &str = "
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.primary_demote_timeout = 3000
";

/// One `pg_autoctl run` process and the PostgreSQL it keeps.
#[derive(Debug)]
struct Member {
    name: String,
    data: PathBuf,
    port: u16,
    run: Option<Child>,
}

/// A running formation; dropping it kills every process of it.
#[derive(Debug)]
pub struct LocalFormation {
    dir: PathBuf,
    bin: PathBuf,
    /// The `postgres` user's uid and gid when running as root.
    as_postgres: Option<(u32, u32)>,
    monitor: Member,
    nodes: Vec<Member>,
}

/// A node's state as the monitor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name (`n1`, `n2`, `n3`).
    pub name: String,
    /// What the node last reported (`primary`, `secondary`, `wait_primary`, ...).
    pub reported: String,
    /// What the monitor assigned it.
    pub assigned: String,
}

fn command_error(what: &str) -> impl Fn(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Command(format!("{what}: {e}"))
}

fn id_of(flag: &str) -> Result<u32, ServerError> {
    let out = Command::new("id").args([flag, "postgres"]).output().map_err(command_error("id"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| ServerError::Command("no postgres user (install the postgresql package)".into()))
}

fn free_port() -> Result<u16, ServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(command_error("port"))?;
    l.local_addr().map(|a| a.port()).map_err(command_error("port"))
}

/// Runs `sql` (simple protocol, text results) on its own thread with a fresh connection, so
/// that callers on an async runtime's threads can use it too.
fn query(url: &str, sql: &str) -> Result<Vec<Vec<String>>, ServerError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client = postgres::Client::connect(url, postgres::NoTls)
                .map_err(|e| ServerError::Command(format!("connect to {url}: {e}")))?;
            let messages = client.simple_query(sql).map_err(|e| ServerError::Command(format!("{sql}: {e}")))?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).unwrap_or_default().to_string()).collect())
                    }
                    _ => None,
                })
                .collect())
        })
        .join()
        .unwrap_or_else(|_| Err(ServerError::Command("the query thread panicked".into())))
    })
}

/// Kills a process group and waits for its leader.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(2).map(str::to_string)
}

/// Kills the PostgreSQL whose data directory is `data`, if its pid file names a live one: the
/// postmaster and, at the same instant, its backends and WAL senders (its process group; the
/// keeper starts it in a session of its own). Killing the postmaster alone would leave a
/// backend able to finish a commit a moment after "the machine died".
fn kill_postmaster(data: &Path) {
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else { return };
    let Some(pid) = text.lines().next().map(|l| l.trim().to_string()) else { return };
    let own = process_group("self");
    match process_group(&pid) {
        Some(group) if Some(&group) != own.as_ref() && group != "0" && group != "1" => {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).stderr(Stdio::null()).status();
        }
        _ => {}
    }
    let _ = Command::new("kill").args(["-KILL", &pid]).stderr(Stdio::null()).status();
}

impl LocalFormation {
    /// Creates the monitor and the three nodes under `dir` (which must exist and be empty) and
    /// starts them; returns once the monitor reports one primary and two secondaries and the
    /// primary commits synchronously to them. Takes some tens of seconds (three clusters and two
    /// base backups).
    pub fn start(dir: &Path) -> Result<LocalFormation, ServerError> {
        let bin = binaries().ok_or(ServerError::NotInstalled)?;
        if Command::new("pg_autoctl").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            return Err(ServerError::Command(
                "pg_autoctl is not installed (Debian packages postgresql-15-auto-failover and pg-auto-failover-cli)"
                    .into(),
            ));
        }
        let as_postgres = if Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(ServerError::Command(format!("chown {}", dir.display())));
            }
            Some((id_of("-u")?, id_of("-g")?))
        } else {
            None
        };
        let member = |name: &str| -> Result<Member, ServerError> {
            Ok(Member { name: name.into(), data: dir.join(name), port: free_port()?, run: None })
        };
        let mut formation =
            LocalFormation { dir: dir.to_path_buf(), bin, as_postgres, monitor: member("monitor")?, nodes: Vec::new() };
        formation.start_monitor()?;
        for i in 1..=NODES {
            formation.add_node(&format!("n{i}"))?;
        }
        formation.wait_ready(None)?;
        Ok(formation)
    }

    fn pg_autoctl(&self) -> Command {
        let mut c = Command::new("pg_autoctl");
        c.current_dir(&self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("xdg-config"))
            .env("XDG_DATA_HOME", self.dir.join("xdg-data"))
            .env("PG_CONFIG", self.bin.join("pg_config"));
        if let Some((uid, gid)) = self.as_postgres {
            c.uid(uid).gid(gid).env("HOME", &self.dir).env("USER", "postgres");
        }
        c
    }

    fn create(&self, what: &str, args: &[String]) -> Result<(), ServerError> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let out = self
            .pg_autoctl()
            .args(["create", what, "--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1"])
            .args(["--listen", "127.0.0.1", "--pgctl", &pg_ctl])
            .args(args)
            .output()
            .map_err(command_error("pg_autoctl create"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ServerError::Command(format!(
                "pg_autoctl create {what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )))
        }
    }

    /// Starts `pg_autoctl run` for a member, leading a process group of its own, logging to
    /// `<dir>/<name>.log`.
    fn spawn_run(&self, member: &Member) -> Result<Child, ServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", member.name)))
            .map_err(command_error("open the log"))?;
        let err = log.try_clone().map_err(command_error("open the log"))?;
        self.pg_autoctl()
            .args(["run", "--pgdata"])
            .arg(&member.data)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(command_error("pg_autoctl run"))
    }

    fn monitor_url(&self) -> String {
        format!("host=127.0.0.1 port={} user=autoctl_node dbname=pg_auto_failover connect_timeout=2", self.monitor.port)
    }

    fn start_monitor(&mut self) -> Result<(), ServerError> {
        let args = [
            "--pgdata".into(),
            self.monitor.data.display().to_string(),
            "--pgport".into(),
            self.monitor.port.to_string(),
        ];
        self.create("monitor", &args)?;
        let conf = self.monitor.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(command_error("read the monitor's configuration"))?;
        text.push_str(MONITOR_SETTINGS);
        std::fs::write(&conf, text).map_err(command_error("write the monitor's configuration"))?;
        self.monitor.run = Some(self.spawn_run(&self.monitor)?);
        let deadline = Instant::now() + READY_TIMEOUT;
        while query(&self.monitor_url(), "SELECT count(*) FROM pgautofailover.node").is_err() {
            if Instant::now() > deadline {
                return Err(self.not_ready("the monitor never answered"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn add_node(&mut self, name: &str) -> Result<(), ServerError> {
        let mut node = Member { name: name.into(), data: self.dir.join(name), port: free_port()?, run: None };
        let monitor =
            format!("postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.monitor.port);
        let args = [
            "--pgdata".into(),
            node.data.display().to_string(),
            "--pgport".into(),
            node.port.to_string(),
            "--name".into(),
            name.into(),
            "--monitor".into(),
            monitor,
        ];
        self.create("postgres", &args)?;
        node.run = Some(self.spawn_run(&node)?);
        self.nodes.push(node);
        // The next node's base backup needs this one settled (the first: `single`).
        self.wait_ready(None).map(|_| ())
    }

    /// The monitor's view of each node, by node id.
    pub fn states(&self) -> Result<Vec<NodeState>, ServerError> {
        let rows = query(
            &self.monitor_url(),
            "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid",
        )?;
        Ok(rows
            .into_iter()
            .map(|r| NodeState { name: r[0].clone(), reported: r[1].clone(), assigned: r[2].clone() })
            .collect())
    }

    /// The index (0-based) of the node that is primary and settled, if one is.
    pub fn primary(&self) -> Result<Option<usize>, ServerError> {
        Ok(self
            .states()?
            .iter()
            .find(|s| s.reported == "primary" && s.assigned == "primary")
            .and_then(|s| self.nodes.iter().position(|n| n.name == s.name)))
    }

    /// Waits until every live node has settled (reported = assigned), one node other than
    /// `except` is a primary with a synchronous standby configured, and the others are
    /// secondaries; returns the primary's index.
    pub fn wait_ready(&self, except: Option<usize>) -> Result<usize, ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(primary)) = self.settled_primary(except) {
                return Ok(primary);
            }
            if Instant::now() > deadline {
                return Err(self.not_ready("the formation did not settle"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn settled_primary(&self, except: Option<usize>) -> Result<Option<usize>, ServerError> {
        let live: Vec<NodeState> =
            self.states()?.into_iter().filter(|s| except.is_none_or(|i| self.nodes[i].name != s.name)).collect();
        if live.len() == 1 {
            // A lone node settles as `single`: no standby to wait for.
            let only = &live[0];
            let settled = only.reported == "single" && only.assigned == "single";
            return Ok(settled.then(|| self.nodes.iter().position(|n| n.name == only.name)).flatten());
        }
        let settled =
            live.iter().all(|s| s.reported == s.assigned && ["primary", "secondary"].contains(&s.reported.as_str()));
        let primaries: Vec<&NodeState> = live.iter().filter(|s| s.reported == "primary").collect();
        if !settled || primaries.len() != 1 {
            return Ok(None);
        }
        let Some(index) = self.nodes.iter().position(|n| n.name == primaries[0].name) else { return Ok(None) };
        let names = query(&self.node_url(index), "SHOW synchronous_standby_names")?;
        let synchronous = names.first().and_then(|r| r.first()).is_some_and(|n| !n.trim().is_empty());
        Ok(synchronous.then_some(index))
    }

    fn not_ready(&self, what: &str) -> ServerError {
        let states = self.states().map(|s| format!("{s:?}")).unwrap_or_else(|e| e.to_string());
        ServerError::Command(format!("{what}: {states}; logs in {}", self.dir.display()))
    }

    /// A connection string for node `index` alone.
    pub fn node_url(&self, index: usize) -> String {
        format!("host=127.0.0.1 port={} user={ROLE} dbname=postgres connect_timeout=2", self.nodes[index].port)
    }

    /// The connection string a hub uses: every node, and only the read-write one is taken
    /// (`target_session_attrs=read-write`), so after a failover the hub finds the new primary.
    pub fn url(&self) -> String {
        let hosts = vec!["127.0.0.1"; self.nodes.len()].join(",");
        let ports = self.nodes.iter().map(|n| n.port.to_string()).collect::<Vec<_>>().join(",");
        format!(
            "host={hosts} port={ports} user={ROLE} dbname=postgres target_session_attrs=read-write connect_timeout=2"
        )
    }

    /// Kills node `index` the way a crash would: its `pg_autoctl` processes and its PostgreSQL,
    /// with SIGKILL.
    pub fn kill_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut run) = node.run.take() {
            kill_group(&mut run);
        }
        kill_postmaster(&node.data);
    }
}

impl Drop for LocalFormation {
    fn drop(&mut self) {
        for member in self.nodes.iter_mut().chain(std::iter::once(&mut self.monitor)) {
            if let Some(mut run) = member.run.take() {
                kill_group(&mut run);
            }
            kill_postmaster(&member.data);
        }
    }
}
