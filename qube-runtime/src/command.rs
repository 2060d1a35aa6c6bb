//! [`Command`]: the builder, like `std::process::Command` with a cgroup, namespaces and
//! a root filesystem. Everything the child will need is computed here, before the clone.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use qube_cgroup::{Cgroup, Controllers, Resources};

use crate::caps::{self, bounding_bits_to_drop, Capabilities, CapsetArgs};
use crate::child::{ChildPlan, Exec, Ids};
use crate::container::{oom_kills, Container, ParentStdio};
use crate::error::{Error, Result, Step};
use crate::namespaces::{id_map_text, IdMap, Namespaces, Network};
use crate::rootfs::{self, c_path, c_str, Bind, FsSpec};
use crate::spawn::{self, IdMaps, Launch, SpawnMethod};

/// The `PATH` a container gets when its environment is not inherited.
///
/// ```
/// assert!(qube_runtime::DEFAULT_PATH.ends_with(":/bin"));
/// ```
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Controllers enabled for every container when the parent can offer them, so that
/// [`Container::stats`] and OOM detection work without any limit set.
const ALWAYS_WANTED: Controllers = Controllers::MEMORY.union(Controllers::PIDS);

/// Where a standard stream of the container goes.
///
/// ```
/// use qube_runtime::{Command, Stdio};
/// let cmd = Command::new("/bin/cat").stdin(Stdio::Null).stdout(Stdio::Piped);
/// ```
#[derive(Debug, Default)]
pub enum Stdio {
    /// The parent's own stream (the default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe whose other end the parent reads or writes ([`Container::stdout`]).
    Piped,
    /// An open file (duplicated at each spawn).
    File(File),
}

impl From<File> for Stdio {
    fn from(file: File) -> Stdio {
        Stdio::File(file)
    }
}

/// A container to start: program, arguments, environment, cgroup and limits,
/// namespaces, root filesystem, user, stdio.
///
/// ```no_run
/// use qube_cgroup::{Bytes, Cgroup, Controllers, Max, Resources};
/// use qube_runtime::{Command, Namespaces};
///
/// let parent = Cgroup::root()?.create_path("qube", Controllers::MEMORY | Controllers::PIDS)?;
/// let limits = Resources {
///     memory_max: Some(Max::Limit(Bytes::gib(2))),
///     memory_swap_max: Some(Max::Limit(Bytes::gib(1))),
///     ..Resources::default()
/// };
/// let mut container = Command::new("/bin/sh")
///     .args(["-c", "echo hello from $(hostname)"])
///     .namespaces(Namespaces::PID | Namespaces::MOUNT | Namespaces::UTS | Namespaces::IPC)
///     .hostname("box")
///     .rootfs("/var/lib/qube/rootfs/busybox")
///     .cgroup(&parent, "hello")
///     .resources(limits)
///     .spawn()?;
/// println!("{}", container.wait()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    inherit_env: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    hostname: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Vec<u32>,
    namespaces: Namespaces,
    network: Network,
    rootfs: Option<PathBuf>,
    readonly_root: bool,
    binds: Vec<Bind>,
    parent_cgroup: Option<PathBuf>,
    cgroup_name: String,
    resources: Resources,
    stdio: [Stdio; 3],
    capabilities: Capabilities,
    uid_map: Vec<IdMap>,
    gid_map: Vec<IdMap>,
    method: SpawnMethod,
    workload_is_init: bool,
    exit_status_file: Option<PathBuf>,
}

impl Command {
    /// A container running `program` (a path, or a name looked up in the container's
    /// `PATH`), with a cleared environment but for [`DEFAULT_PATH`].
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("sh");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            inherit_env: false,
            env: BTreeMap::new(),
            cwd: None,
            hostname: None,
            uid: None,
            gid: None,
            groups: Vec::new(),
            namespaces: Namespaces::empty(),
            network: Network::Host,
            rootfs: None,
            readonly_root: false,
            binds: Vec::new(),
            parent_cgroup: None,
            cgroup_name: String::new(),
            resources: Resources::default(),
            stdio: [Stdio::Inherit, Stdio::Inherit, Stdio::Inherit],
            capabilities: Capabilities::DOCKER_DEFAULT,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            method: SpawnMethod::Auto,
            workload_is_init: false,
            exit_status_file: None,
        }
    }

    /// Adds an argument.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("ls").arg("-l");
    /// ```
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("sh").args(["-c", "exit 3"]);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("env").env("LANG", "C.UTF-8");
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Removes an environment variable (from an inherited environment, or `PATH`).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("env").inherit_env(true).env_remove("SSH_AUTH_SOCK");
    /// ```
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Command {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts from the parent's environment instead of an empty one with `PATH`.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("env").inherit_env(true);
    /// ```
    pub fn inherit_env(mut self, inherit: bool) -> Command {
        self.inherit_env = inherit;
        self
    }

    /// The working directory inside the container (default `/` with a rootfs, else the
    /// parent's).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("pwd").current_dir("/tmp");
    /// ```
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The hostname (adds [`Namespaces::UTS`]).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("hostname").hostname("box");
    /// ```
    pub fn hostname(mut self, name: impl Into<String>) -> Command {
        self.hostname = Some(name.into());
        self.namespaces |= Namespaces::UTS;
        self
    }

    /// The user id to run as (supplementary groups are cleared).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("id").uid(65534).gid(65534);
    /// ```
    pub fn uid(mut self, uid: u32) -> Command {
        self.uid = Some(uid);
        self
    }

    /// The group id to run as (default 0 when only [`uid`](Command::uid) is given).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("id").gid(100);
    /// ```
    pub fn gid(mut self, gid: u32) -> Command {
        self.gid = Some(gid);
        self
    }

    /// Supplementary groups.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("id").uid(1000).groups([5, 100]);
    /// ```
    pub fn groups(mut self, groups: impl IntoIterator<Item = u32>) -> Command {
        self.groups = groups.into_iter().collect();
        self
    }

    /// The namespaces to create (added to those other settings imply).
    ///
    /// ```
    /// use qube_runtime::{Command, Namespaces};
    /// let cmd = Command::new("sh").namespaces(Namespaces::PID | Namespaces::MOUNT | Namespaces::IPC);
    /// ```
    pub fn namespaces(mut self, namespaces: Namespaces) -> Command {
        self.namespaces |= namespaces;
        self
    }

    /// The host's network (default) or a new network namespace with `lo` up.
    ///
    /// ```
    /// use qube_runtime::{Command, Network};
    /// let cmd = Command::new("ip").arg("link").network(Network::Isolated);
    /// ```
    pub fn network(mut self, network: Network) -> Command {
        self.network = network;
        self
    }

    /// The root filesystem: a directory that is bind-mounted and entered with
    /// `pivot_root` (adds [`Namespaces::MOUNT`]).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("/bin/sh").rootfs("/var/lib/qube/busybox");
    /// ```
    pub fn rootfs(mut self, dir: impl AsRef<Path>) -> Command {
        self.rootfs = Some(dir.as_ref().to_owned());
        self.namespaces |= Namespaces::MOUNT;
        self
    }

    /// Whether the rootfs is mounted read-only (default false).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("/bin/sh").rootfs("/srv/root").readonly_root(true);
    /// ```
    pub fn readonly_root(mut self, readonly: bool) -> Command {
        self.readonly_root = readonly;
        self
    }

    /// Bind-mounts host path `source` at `target` inside the container (needs a rootfs).
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("/bin/ls").rootfs("/srv/root").bind("/srv/data", "/data", true);
    /// ```
    pub fn bind(
        mut self,
        source: impl AsRef<Path>,
        target: impl AsRef<Path>,
        readonly: bool,
    ) -> Command {
        self.binds.push(Bind {
            source: source.as_ref().to_owned(),
            target: target.as_ref().to_owned(),
            readonly,
        });
        self
    }

    /// The cgroup: a new child `name` of `parent`, created at spawn with the
    /// [`resources`](Command::resources) applied before the container runs, and removed
    /// when the [`Container`] is dropped.
    ///
    /// ```no_run
    /// let parent = qube_cgroup::Cgroup::root()?;
    /// let cmd = qube_runtime::Command::new("/bin/true").cgroup(&parent, "job-1");
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn cgroup(mut self, parent: &Cgroup, name: impl Into<String>) -> Command {
        self.parent_cgroup = Some(parent.path().to_owned());
        self.cgroup_name = name.into();
        self
    }

    /// The limits written to the container's cgroup before it runs.
    ///
    /// ```
    /// use qube_cgroup::{Bytes, Max, Resources};
    /// let limits = Resources { memory_max: Some(Max::Limit(Bytes::mib(64))), ..Resources::default() };
    /// let cmd = qube_runtime::Command::new("/bin/true").resources(limits);
    /// ```
    pub fn resources(mut self, resources: Resources) -> Command {
        self.resources = resources;
        self
    }

    /// Where stdin comes from.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("cat").stdin(qube_runtime::Stdio::Piped);
    /// ```
    pub fn stdin(mut self, stdio: Stdio) -> Command {
        self.stdio[0] = stdio;
        self
    }

    /// Where stdout goes.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("ls").stdout(qube_runtime::Stdio::Piped);
    /// ```
    pub fn stdout(mut self, stdio: Stdio) -> Command {
        self.stdio[1] = stdio;
        self
    }

    /// Where stderr goes.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("ls").stderr(qube_runtime::Stdio::Null);
    /// ```
    pub fn stderr(mut self, stdio: Stdio) -> Command {
        self.stdio[2] = stdio;
        self
    }

    /// The capabilities kept (default [`Capabilities::DOCKER_DEFAULT`]).
    ///
    /// ```
    /// use qube_runtime::{Capabilities, Command};
    /// let cmd = Command::new("ping").capabilities(Capabilities::NET_RAW);
    /// ```
    pub fn capabilities(mut self, caps: Capabilities) -> Command {
        self.capabilities = caps;
        self
    }

    /// A new user namespace with these uid and gid maps (adds [`Namespaces::USER`]).
    /// The container runs as uid and gid 0 inside unless [`uid`](Command::uid) says
    /// otherwise.
    ///
    /// A parent with `CAP_SETUID` and `CAP_SETGID` (root) may map any range. An
    /// unprivileged parent (in a delegated cgroup) may map only its own uid and gid, one
    /// id each, e.g. `IdMap { inside: 0, outside: getuid(), count: 1 }`: it writes `deny`
    /// to `setgroups` first, as the kernel requires, so the container keeps the parent's
    /// supplementary groups and [`groups`](Command::groups) is refused. A wider map is
    /// [`Error::Unsupported`] at [`Step::WriteIdMap`], with the kernel's EPERM.
    ///
    /// ```
    /// use qube_runtime::{Command, IdMap};
    /// let range = IdMap { inside: 0, outside: 100_000, count: 65_536 };
    /// let cmd = Command::new("/bin/id").user_namespace(vec![range], vec![range]);
    /// ```
    pub fn user_namespace(mut self, uid_map: Vec<IdMap>, gid_map: Vec<IdMap>) -> Command {
        self.uid_map = uid_map;
        self.gid_map = gid_map;
        self.namespaces |= Namespaces::USER;
        self
    }

    /// How the first process is created (default [`SpawnMethod::Auto`]).
    ///
    /// ```
    /// use qube_runtime::{Command, SpawnMethod};
    /// let cmd = Command::new("/bin/true").spawn_method(SpawnMethod::Clone3);
    /// ```
    pub fn spawn_method(mut self, method: SpawnMethod) -> Command {
        self.method = method;
        self
    }

    /// Says the workload is an init (reaps zombies and handles signals itself), so with a
    /// pid namespace it runs as pid 1 without the built-in reaper.
    ///
    /// ```
    /// let cmd = qube_runtime::Command::new("/sbin/init").workload_is_init(true);
    /// ```
    pub fn workload_is_init(mut self, is_init: bool) -> Command {
        self.workload_is_init = is_init;
        self
    }

    /// Has the built-in reaper also write how the workload ended into the file at `path`
    /// (created, or emptied, at spawn; one line, `exited CODE` or `killed SIGNAL`).
    ///
    /// The status reaches the [`Container`] handle through a pipe anyway; the file
    /// outlives the process that started the container, so a supervisor that restarts
    /// learns how a container ended while it was away: through
    /// [`Container::read_exit_status_from`] on a handle it adopts, or
    /// [`ExitStatus::read_file`](crate::ExitStatus::read_file) once it has ended. Needs
    /// the reaper: a pid namespace, and not [`workload_is_init`](Command::workload_is_init).
    ///
    /// ```
    /// use qube_runtime::{Command, Namespaces};
    /// let cmd = Command::new("/bin/server")
    ///     .namespaces(Namespaces::PID | Namespaces::MOUNT)
    ///     .exit_status_file("/var/lib/my-supervisor/web/exit-status");
    /// ```
    pub fn exit_status_file(mut self, path: impl AsRef<Path>) -> Command {
        self.exit_status_file = Some(path.as_ref().to_owned());
        self
    }

    /// Creates the cgroup with its limits, starts the container in it and returns once
    /// the workload has been exec'd. A failure anywhere before the exec (in the parent or
    /// in the child) is returned as a typed error naming the step, path and errno, and
    /// leaves nothing behind: the child is reaped and the cgroup removed.
    ///
    /// ```no_run
    /// let parent = qube_cgroup::Cgroup::root()?;
    /// let mut c = qube_runtime::Command::new("/bin/true").cgroup(&parent, "t").spawn()?;
    /// assert!(c.wait()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(&self) -> Result<Container> {
        let namespaces = self.effective_namespaces();
        let id_maps = self.id_maps(namespaces);
        self.validate(namespaces, id_maps.as_ref())?;
        let status_file = self.open_exit_status_file()?;
        let cgroup = self.create_cgroup()?;
        let oom_kills_at_start = oom_kills(&cgroup);
        let (parent_stdio, child_stdio) = self.open_stdio()?;
        let mut plan = self.child_plan(namespaces, &child_stdio)?;
        plan.status_file = status_file.as_ref().map(AsRawFd::as_raw_fd);
        plan.set_groups = !id_maps.as_ref().is_some_and(IdMaps::deny_setgroups);
        let launch = Launch {
            cgroup: &cgroup,
            namespaces: namespaces.clone_flags(),
            method: self.method,
            id_maps,
            program: PathBuf::from(&self.program),
            cwd: self.cwd().unwrap_or_default(),
        };
        let spawned = spawn::spawn(plan, &launch)?;
        // The reaper holds its own copies of these.
        drop(child_stdio);
        drop(status_file);
        Ok(Container::new(
            spawned,
            cgroup,
            parent_stdio,
            oom_kills_at_start,
        ))
    }

    /// Starts the container with stdout and stderr piped (unless set otherwise) and
    /// collects them and the exit status.
    ///
    /// ```no_run
    /// let parent = qube_cgroup::Cgroup::root()?;
    /// let out = qube_runtime::Command::new("/bin/echo").arg("hi").cgroup(&parent, "e").output()?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn output(mut self) -> Result<crate::Output> {
        for stream in &mut self.stdio[1..] {
            if matches!(stream, Stdio::Inherit) {
                *stream = Stdio::Piped;
            }
        }
        self.spawn()?.output()
    }

    fn effective_namespaces(&self) -> Namespaces {
        match self.network {
            Network::Isolated => self.namespaces | Namespaces::NET,
            Network::Host => self.namespaces,
        }
    }

    fn validate(&self, namespaces: Namespaces, id_maps: Option<&IdMaps>) -> Result<()> {
        if self.parent_cgroup.is_none() {
            return Err(Error::config(
                "cgroup",
                "call .cgroup(parent, name) to say where the container's cgroup goes",
            ));
        }
        if namespaces.contains(Namespaces::USER)
            && (self.uid_map.is_empty() || self.gid_map.is_empty())
        {
            return Err(Error::config(
                "user namespace",
                "give both a uid map and a gid map",
            ));
        }
        if id_maps.is_some_and(IdMaps::deny_setgroups) && !self.groups.is_empty() {
            return Err(Error::config(
                "groups",
                "this process lacks CAP_SETGID, so it must deny setgroups in the user \
                 namespace before it may write gid_map (user_namespaces(7)): the container \
                 keeps this process's supplementary groups and cannot be given others",
            ));
        }
        if self.rootfs.is_none() && (self.readonly_root || !self.binds.is_empty()) {
            return Err(Error::config(
                "rootfs",
                "read-only root and bind mounts need a rootfs",
            ));
        }
        if self.exit_status_file.is_some() && !self.has_reaper(namespaces) {
            return Err(Error::config(
                "exit_status_file",
                "only the built-in reaper writes it: use a pid namespace, and a workload that is not an init",
            ));
        }
        if let Some(cwd) = &self.cwd {
            if self.rootfs.is_some() && !cwd.is_absolute() {
                return Err(Error::config(
                    "current_dir",
                    "must be absolute inside a rootfs",
                ));
            }
        }
        self.resources
            .validate()
            .map_err(|e| Error::config("resources", e.to_string()))
    }

    /// Whether pid 1 of the container is the built-in reaper rather than the workload.
    fn has_reaper(&self, namespaces: Namespaces) -> bool {
        namespaces.contains(Namespaces::PID) && !self.workload_is_init
    }

    /// The exit status file, created or emptied, close-on-exec so only the reaper (which
    /// never execs) keeps it.
    fn open_exit_status_file(&self) -> Result<Option<File>> {
        let Some(path) = &self.exit_status_file else {
            return Ok(None);
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map(Some)
            .map_err(|e| Error::io(Step::OpenExitStatusFile, path, &e))
    }

    /// Enables what the limits need in the parent (never in one that holds processes),
    /// creates the cgroup and writes the limits: all before the child exists.
    fn create_cgroup(&self) -> Result<Cgroup> {
        let parent_path = self.parent_cgroup.as_deref().unwrap_or(Path::new("/"));
        let parent = Cgroup::open(parent_path)
            .map_err(|e| Error::cgroup(Step::CreateCgroup, parent_path, e))?;
        let available = parent
            .controllers()
            .map_err(|e| Error::cgroup(Step::EnableControllers, parent_path, e))?;
        let wanted = self.resources.controllers() | (ALWAYS_WANTED & available);
        enable_in_parent(&parent, wanted)?;
        let cgroup = parent.create(&self.cgroup_name).map_err(|e| {
            Error::cgroup(Step::CreateCgroup, &parent_path.join(&self.cgroup_name), e)
        })?;
        cgroup
            .apply(&self.resources)
            .map_err(|e| Error::cgroup(Step::ApplyLimits, cgroup.path(), e))?;
        Ok(cgroup)
    }

    fn open_stdio(&self) -> Result<(ParentStdio, [Option<OwnedFd>; 3])> {
        let mut parent = ParentStdio::default();
        let mut child: [Option<OwnedFd>; 3] = [None, None, None];
        for (i, stdio) in self.stdio.iter().enumerate() {
            let (parent_end, child_end) = open_one(stdio, i == 0)?;
            child[i] = child_end;
            match i {
                0 => parent.stdin = parent_end,
                1 => parent.stdout = parent_end,
                _ => parent.stderr = parent_end,
            }
        }
        Ok((parent, child))
    }

    fn child_plan(
        &self,
        namespaces: Namespaces,
        stdio: &[Option<OwnedFd>; 3],
    ) -> Result<ChildPlan> {
        let fs = rootfs::plan(&FsSpec {
            namespaces,
            rootfs: self.absolute_rootfs()?.as_deref(),
            readonly_root: self.readonly_root,
            binds: &self.binds,
        })?;
        let ids = self.ids(namespaces);
        let final_uid = ids
            .as_ref()
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |i| i.uid);
        let privileged = namespaces.contains(Namespaces::USER) || nix::unistd::geteuid().is_root();
        Ok(ChildPlan {
            wait_for_parent: None,
            parent_go_end: None,
            report: -1,
            status: None,
            status_file: None,
            become_namespace_root: namespaces.contains(Namespaces::USER),
            // Cleared by spawn() where the parent must deny setgroups.
            set_groups: true,
            unshare_cgroup: namespaces.contains(Namespaces::CGROUP),
            hostname: self.hostname.as_deref().map(c_str).transpose()?,
            loopback_up: namespaces.contains(Namespaces::NET),
            fs,
            cwd: self.cwd().map(|c| c_path(&c)).transpose()?,
            stdio: stdio
                .each_ref()
                .map(|fd| fd.as_ref().map(AsRawFd::as_raw_fd)),
            bounding_drop: if privileged {
                bounding_bits_to_drop(self.capabilities)
            } else {
                0
            },
            ids,
            capset: (privileged && final_uid == 0).then(|| CapsetArgs::new(self.capabilities)),
            reaper: self.has_reaper(namespaces),
            exec: self.exec_args()?,
        })
    }

    fn absolute_rootfs(&self) -> Result<Option<PathBuf>> {
        let Some(root) = &self.rootfs else {
            return Ok(None);
        };
        let absolute = std::path::absolute(root)
            .map_err(|e| Error::config("rootfs", format!("{}: {e}", root.display())))?;
        // A symlinked rootfs is entered where it points; a missing one is reported by the child.
        Ok(Some(absolute.canonicalize().unwrap_or(absolute)))
    }

    fn cwd(&self) -> Option<PathBuf> {
        match (&self.cwd, &self.rootfs) {
            (Some(cwd), _) => Some(cwd.clone()),
            (None, Some(_)) => Some(PathBuf::from("/")),
            (None, None) => None,
        }
    }

    fn ids(&self, namespaces: Namespaces) -> Option<Ids> {
        let in_user_ns = namespaces.contains(Namespaces::USER);
        if self.uid.is_none() && self.gid.is_none() && !in_user_ns {
            return None;
        }
        Some(Ids {
            uid: self.uid.unwrap_or(0),
            gid: self.gid.unwrap_or(0),
            groups: self.groups.clone(),
        })
    }

    /// The maps for a new user namespace, with what this thread may map: the kernel
    /// judges the map writes by the capabilities of the writer in its own user namespace.
    fn id_maps(&self, namespaces: Namespaces) -> Option<IdMaps> {
        if !namespaces.contains(Namespaces::USER) {
            return None;
        }
        let caps = caps::effective();
        Some(IdMaps {
            uid_map: id_map_text(&self.uid_map),
            gid_map: id_map_text(&self.gid_map),
            can_setuid: caps.contains(Capabilities::SETUID),
            can_setgid: caps.contains(Capabilities::SETGID),
        })
    }

    fn exec_args(&self) -> Result<Exec> {
        let env = self.environment();
        let path_var = env
            .get(OsStr::new("PATH"))
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let candidates = exec_candidates(&self.program, &path_var)?;
        let argv = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| os_c_string("argument", a))
            .collect::<Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut pair = k.clone();
                pair.push("=");
                pair.push(v);
                os_c_string("environment variable", &pair)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Exec::new(candidates, argv, envp))
    }

    fn environment(&self) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> = if self.inherit_env {
            std::env::vars_os().collect()
        } else {
            [("PATH".into(), DEFAULT_PATH.into())].into_iter().collect()
        };
        for (key, value) in &self.env {
            match value {
                Some(v) => env.insert(key.clone(), v.clone()),
                None => env.remove(key),
            };
        }
        env
    }
}

/// Enables `wanted` controllers in `parent` where they are missing; refuses when the
/// parent holds processes (the no-internal-processes rule would make the kernel refuse
/// too, or, at the root, the processes would escape the limits).
fn enable_in_parent(parent: &Cgroup, wanted: Controllers) -> Result<()> {
    let path = parent.path();
    let enabled = parent
        .subtree_control()
        .map_err(|e| Error::cgroup(Step::EnableControllers, path, e))?;
    let missing = wanted - enabled;
    if missing.is_empty() {
        return Ok(());
    }
    let procs = parent
        .procs()
        .map_err(|e| Error::cgroup(Step::EnableControllers, path, e))?;
    if !procs.is_empty() {
        return Err(Error::config(
            "cgroup",
            format!(
                "{} must enable [{missing}] for its children but holds processes {procs:?}; \
                 use a parent without processes (e.g. from Cgroup::create_path)",
                path.display()
            ),
        ));
    }
    parent
        .enable_controllers(missing)
        .map_err(|e| Error::cgroup(Step::EnableControllers, path, e))
}

/// The paths `execve` tries: the program itself if it has a `/`, else each `PATH`
/// directory joined with it (searched inside the container, after `pivot_root`).
fn exec_candidates(program: &OsStr, path_var: &OsStr) -> Result<Vec<CString>> {
    if program.is_empty() {
        return Err(Error::config("program", "empty"));
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![os_c_string("program", program)?]);
    }
    path_var
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| if dir.is_empty() { &b"."[..] } else { dir })
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(program))
        .map(|p| os_c_string("program", p.as_os_str()))
        .collect()
}

fn os_c_string(what: &'static str, s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| Error::config(what, format!("{s:?} contains a NUL byte")))
}

/// The parent's and the child's end of one stdio stream. Child ends are moved to fd 3
/// or above, so that `dup2` onto 0, 1 and 2 in the child can never overwrite one.
fn open_one(stdio: &Stdio, is_stdin: bool) -> Result<(Option<File>, Option<OwnedFd>)> {
    match stdio {
        Stdio::Inherit => Ok((None, None)),
        Stdio::Null => {
            let flags = if is_stdin {
                OFlag::O_RDONLY
            } else {
                OFlag::O_WRONLY
            };
            let fd = nix::fcntl::open(
                "/dev/null",
                flags | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::os(Step::OpenStdio, "/dev/null", e))?;
            Ok((None, Some(above_stdio(fd)?)))
        }
        Stdio::Piped => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| Error::os(Step::CreatePipe, "stdio", e))?;
            let (parent, child) = if is_stdin {
                (write, read)
            } else {
                (read, write)
            };
            Ok((Some(File::from(parent)), Some(above_stdio(child)?)))
        }
        Stdio::File(file) => {
            let fd = file
                .try_clone()
                .map_err(|e| Error::io(Step::OpenStdio, "stdio file", &e))?;
            Ok((None, Some(above_stdio(fd.into())?)))
        }
    }
}

fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw: RawFd = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| Error::os(Step::OpenStdio, "stdio", e))?;
    // SAFETY: a fresh fd returned by F_DUPFD_CLOEXEC, owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_searched_in_path_order() {
        let c = exec_candidates(OsStr::new("sh"), OsStr::new("/usr/bin:/bin")).unwrap();
        assert_eq!(c, [c"/usr/bin/sh".to_owned(), c"/bin/sh".to_owned()]);
        let c = exec_candidates(OsStr::new("./run"), OsStr::new("/bin")).unwrap();
        assert_eq!(c, [c"./run".to_owned()]);
    }

    #[test]
    fn environment_is_cleared_with_a_sane_path() {
        let cmd = Command::new("env").env("A", "1");
        let env = cmd.environment();
        assert_eq!(env.len(), 2);
        assert_eq!(env[OsStr::new("PATH")], DEFAULT_PATH);
        let cmd = Command::new("env").env_remove("PATH");
        assert!(cmd.environment().is_empty());
    }

    #[test]
    fn a_cgroup_is_required() {
        let err = Command::new("/bin/true").spawn().unwrap_err();
        assert!(matches!(err, Error::Config { what: "cgroup", .. }), "{err}");
    }

    #[test]
    fn settings_imply_their_namespaces() {
        let cmd = Command::new("x")
            .hostname("h")
            .rootfs("/r")
            .network(Network::Isolated);
        let ns = cmd.effective_namespaces();
        assert!(ns.contains(Namespaces::UTS | Namespaces::MOUNT | Namespaces::NET));
    }
}
