//! The daemon's containers: starting them, supervising each in a thread of its own
//! (reap, record how it ended, restart by policy), stopping, killing, removing, and
//! taking them over again after a daemon restart.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use qube_cgroup::Cgroup;

use crate::daemon::log;
use crate::images::{ContainerRootfs, Images};
use crate::launch::{self, Exit, Launched};
use crate::logs::{self, Log};
use crate::model::{Limits, Name, RunSpec, Status};
use crate::protocol::{ContainerView, Failure, ImageSource, ImageView, Reply, Request};
use crate::state::{self, Record, RootfsKind, StateDir, RECORD_FORMAT};
use crate::usage;

/// How long a cgroup may take to empty after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// How long the end of a container's output may take to reach its log.
const LOG_DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The most output one reply carries.
const LOG_CHUNK: usize = 64 * 1024;

/// The longest pause before a restart; pauses double from 100 ms up to it.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Every container the daemon knows, running or not.
#[derive(Debug)]
pub struct Manager {
    state: StateDir,
    images: Images,
    parent: Cgroup,
    log_size: u64,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// One container: its record (saved on every change) and what the daemon holds for it.
#[derive(Debug)]
pub struct Slot {
    dir: PathBuf,
    record: Mutex<Record>,
    changed: Condvar,
    log: Arc<Log>,
    /// The first process's pidfd while it runs: signals reach it and never a reused pid.
    pidfd: Mutex<Option<OwnedFd>>,
}

/// How a supervisor begins.
enum Start {
    /// Launch the container, reporting the outcome.
    Fresh(Sender<Result<(), Failure>>),
    /// Watch a container adopted after a daemon restart.
    Adopted(Launched),
    /// Start again, by its policy, a container that ended while no daemon watched it.
    Restart,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slot {
    fn new(record: Record, dir: PathBuf, log_size: u64) -> Slot {
        Slot {
            log: Arc::new(Log::new(&dir, log_size)),
            dir,
            record: Mutex::new(record),
            changed: Condvar::new(),
            pidfd: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> Record {
        lock(&self.record).clone()
    }

    /// Changes the record, saves it and wakes whoever waits on it; returns the new record.
    fn update(&self, state: &StateDir, change: impl FnOnce(&mut Record)) -> Record {
        let changed = self.try_update(state, |r| {
            change(r);
            Ok(())
        });
        changed.unwrap_or_else(|_: Failure| self.snapshot())
    }

    /// Like [`update`](Slot::update), but `change` may refuse, leaving the record as it
    /// was: what it checks cannot change before it acts, as both happen under the lock.
    fn try_update(
        &self,
        state: &StateDir,
        change: impl FnOnce(&mut Record) -> Result<(), Failure>,
    ) -> Result<Record, Failure> {
        let mut record = lock(&self.record);
        let mut next = record.clone();
        change(&mut next)?;
        *record = next;
        if let Err(e) = state.save(&record) {
            log(&format!("saving container {}: {e}", record.id));
        }
        self.changed.notify_all();
        Ok(record.clone())
    }

    /// Waits until `done` holds for the record or the time is up (`Duration::MAX`: no
    /// limit); says whether it holds.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&Record) -> bool) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut record = lock(&self.record);
        while !done(&record) {
            record = match deadline {
                None => self.changed.wait(record).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.changed
                        .wait_timeout(record, left)
                        .map_or_else(|p| p.into_inner().0, |(r, _)| r)
                }
            };
        }
        true
    }

    fn ended(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |r| !r.status.is_live())
    }
}

impl Manager {
    /// The manager of the containers in `state`, with cgroups below `parent`.
    pub fn new(state: StateDir, parent: Cgroup, log_size: u64) -> Manager {
        Manager {
            images: Images::open(&state.images()),
            state,
            parent,
            log_size,
            slots: Mutex::new(Vec::new()),
        }
    }

    /// Answers one request; `send` writes a reply line to the client.
    pub fn handle(
        self: &Arc<Self>,
        request: Request,
        send: &mut dyn FnMut(Reply) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let reply = match request {
            Request::Logs { target, follow } => return self.logs(&target, follow, send),
            Request::Run(spec) => self.run(spec).map(|id| Reply::Started { id }),
            Request::List => Ok(self.containers(self.all())),
            Request::Info { target } => self.find(&target).map(|s| self.containers(vec![s])),
            Request::Stats { targets } => self.stats(&targets),
            Request::Stop {
                target,
                timeout_secs,
            } => self.find(&target).and_then(|slot| {
                self.stop(&slot, Some(Duration::from_secs(timeout_secs)))
                    .map(|view| Reply::Stopped {
                        container: Box::new(view),
                    })
            }),
            Request::Wait { target } => self.find(&target).map(|slot| {
                slot.wait_until(Duration::MAX, |r| !r.status.is_live() && !r.restart_pending);
                Reply::Stopped {
                    container: Box::new(self.view(&slot)),
                }
            }),
            Request::Kill { target, signal } => self
                .find(&target)
                .and_then(|slot| self.kill(&slot, signal))
                .map(|()| Reply::Done),
            Request::Remove { target, force } => self
                .find(&target)
                .and_then(|slot| self.remove(&slot, force))
                .map(|()| Reply::Done),
            Request::Images => Ok(Reply::Images {
                images: self.images.list(),
            }),
            Request::ImportImage { name, source } => {
                self.import(&name, &source).map(|image| Reply::Images {
                    images: vec![image],
                })
            }
            Request::RemoveImage { name } => self.remove_image(&name).map(|()| Reply::Done),
        };
        send(reply.unwrap_or_else(Reply::Failed))
    }

    fn all(&self) -> Vec<Arc<Slot>> {
        lock(&self.slots).clone()
    }

    /// A container by id, name, or unambiguous id prefix.
    fn find(&self, target: &str) -> Result<Arc<Slot>, Failure> {
        let slots = lock(&self.slots);
        let records: Vec<(Arc<Slot>, Record)> =
            slots.iter().map(|s| (s.clone(), s.snapshot())).collect();
        let exact = records
            .iter()
            .find(|(_, r)| r.id == target || r.name.as_str() == target);
        if let Some((slot, _)) = exact {
            return Ok(slot.clone());
        }
        let prefixed: Vec<_> = records
            .iter()
            .filter(|(_, r)| !target.is_empty() && r.id.starts_with(target))
            .collect();
        match prefixed[..] {
            [(slot, _)] => Ok(slot.clone()),
            [] => Err(Failure::bad_input(format!("no such container: {target}"))),
            _ => Err(Failure::bad_input(format!(
                "{target:?} matches several containers; give more of the id"
            ))),
        }
    }

    fn view(&self, slot: &Slot) -> ContainerView {
        let record = slot.snapshot();
        let usage = (record.status == Status::Running)
            .then(|| Cgroup::open(&record.cgroup).ok())
            .flatten()
            .map(|cg| usage::live(&cg));
        ContainerView {
            record,
            usage,
            sampled_at_usec: state::now_usec(),
        }
    }

    fn containers(&self, slots: Vec<Arc<Slot>>) -> Reply {
        Reply::Containers {
            containers: slots.iter().map(|s| self.view(s)).collect(),
        }
    }

    fn stats(&self, targets: &[String]) -> Result<Reply, Failure> {
        let slots = if targets.is_empty() {
            self.all()
                .into_iter()
                .filter(|s| lock(&s.record).status == Status::Running)
                .collect()
        } else {
            targets
                .iter()
                .map(|t| self.find(t))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(self.containers(slots))
    }

    fn import(&self, name: &Name, source: &ImageSource) -> Result<ImageView, Failure> {
        self.images.import(name, source)
    }

    /// Removes an image that no container, running or not, was made from (a stopped one
    /// may start again, and its overlay stands on the image). It is checked and moved
    /// aside under the containers' lock, as [`reserve`](Manager::reserve) checks the image
    /// under it: a `run` and an image removal cannot both succeed. The files are deleted
    /// after the lock is let go.
    fn remove_image(&self, name: &Name) -> Result<(), Failure> {
        let doomed = self.claim_unused_image(name)?;
        self.images.delete(&doomed)
    }

    fn claim_unused_image(&self, name: &Name) -> Result<PathBuf, Failure> {
        let slots = lock(&self.slots);
        let users: Vec<Record> = slots
            .iter()
            .map(|s| s.snapshot())
            .filter(|r| &r.image == name)
            .collect();
        if let Some(user) = users.first() {
            return Err(Failure::conflict(format!(
                "image \"{name}\" is used by {} container(s), {} ({}) among them; remove them first (qube rm)",
                users.len(),
                user.name,
                user.id
            )));
        }
        self.images.move_aside(name)
    }

    // ---- run -------------------------------------------------------------------------

    fn run(self: &Arc<Self>, spec: RunSpec) -> Result<String, Failure> {
        let image = self.images.rootfs(&spec.image)?;
        for volume in &spec.volumes {
            if !volume.host.exists() {
                return Err(Failure::bad_input(format!(
                    "volume source {} does not exist",
                    volume.host.display()
                )));
            }
        }
        let id = state::new_id().map_err(|e| Failure::runtime(e.to_string()))?;
        let slot = self.reserve(self.new_record(&id, spec))?;
        match self.prepare(&slot, &image) {
            Ok(()) => Ok(id),
            Err(failure) => {
                self.discard(&slot);
                Err(failure)
            }
        }
    }

    fn new_record(&self, id: &str, spec: RunSpec) -> Record {
        let name = spec.name.unwrap_or_else(|| Name::for_container(id));
        Record {
            format: RECORD_FORMAT,
            id: id.to_owned(),
            name,
            image: spec.image,
            command: spec.command,
            env: spec.env,
            volumes: spec.volumes,
            isolated: spec.isolated,
            restart: spec.restart,
            limits: Limits::with_defaults(&spec.limits),
            created: state::now(),
            started: None,
            finished: None,
            status: Status::Created,
            pid: None,
            cgroup: self.parent.path().join(id),
            rootfs: RootfsKind::Copy,
            final_usage: None,
            restart_count: 0,
            stop_requested: false,
            restart_pending: false,
        }
    }

    /// Adds the container, unless its name is taken.
    fn reserve(&self, record: Record) -> Result<Arc<Slot>, Failure> {
        let mut slots = lock(&self.slots);
        if !self.images.exists(&record.image) {
            return Err(crate::images::unknown_image(&record.image));
        }
        if let Some(other) = slots
            .iter()
            .map(|s| s.snapshot())
            .find(|r| r.name == record.name)
        {
            return Err(Failure::conflict(format!(
                "the name {:?} is in use by container {}; remove it first (qube rm {})",
                record.name.as_str(),
                other.id,
                record.name
            )));
        }
        let dir = self.state.container(&record.id);
        let slot = Arc::new(Slot::new(record, dir, self.log_size));
        slots.push(slot.clone());
        Ok(slot)
    }

    /// Makes the state directory and root filesystem, then starts the supervisor and
    /// waits for it to report the launch.
    fn prepare(self: &Arc<Self>, slot: &Arc<Slot>, image: &std::path::Path) -> Result<(), Failure> {
        let runtime = |e: std::io::Error| Failure::runtime(e.to_string());
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&slot.dir)
            .map_err(|e| runtime(state::annotate(e, "create", &slot.dir)))?;
        let kind = ContainerRootfs::new(&slot.dir).create(image)?;
        slot.update(&self.state, |r| r.rootfs = kind);
        let (report, outcome) = channel();
        self.supervise_in_thread(slot, Start::Fresh(report))?;
        outcome
            .recv()
            .unwrap_or_else(|_| Err(Failure::runtime("the container's supervisor ended early")))
    }

    fn supervise_in_thread(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        start: Start,
    ) -> Result<(), Failure> {
        let (me, slot) = (self.clone(), slot.clone());
        let name = format!("supervise-{}", lock(&slot.record).id);
        thread::Builder::new()
            .name(name)
            .spawn(move || me.supervise(&slot, start))
            .map(drop)
            .map_err(|e| Failure::runtime(format!("cannot start a supervisor thread: {e}")))
    }

    /// Forgets a container that never started.
    fn discard(&self, slot: &Arc<Slot>) {
        let _ = ContainerRootfs::new(&slot.dir).remove();
        let _ = fs::remove_dir_all(&slot.dir);
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, slot));
    }

    // ---- supervision -----------------------------------------------------------------

    /// Owns the running container: waits for it, records its end, restarts it by policy.
    fn supervise(self: Arc<Self>, slot: &Arc<Slot>, start: Start) {
        let mut running = match start {
            Start::Adopted(launched) => launched,
            Start::Restart => match self.restart(slot) {
                Some(launched) => launched,
                None => return,
            },
            Start::Fresh(report) => match self.launch(slot) {
                Ok(launched) => {
                    let _ = report.send(Ok(()));
                    launched
                }
                Err(failure) => {
                    let _ = report.send(Err(failure));
                    return;
                }
            },
        };
        loop {
            let exit = running.wait();
            self.finish(slot, running, exit);
            match self.restart(slot) {
                Some(launched) => running = launched,
                None => return,
            }
        }
    }

    /// Starts the container's process; on success it is Running with its pid recorded.
    fn launch(&self, slot: &Arc<Slot>) -> Result<Launched, Failure> {
        let record = slot.snapshot();
        let image = self.images.rootfs(&record.image)?;
        let rootfs = ContainerRootfs::new(&slot.dir);
        rootfs.remount(&image, record.rootfs)?;
        self.remove_stale_cgroup(&record.id);
        let (reader, writer) = logs::create_pipe(&slot.dir)
            .map_err(|e| Failure::runtime(format!("cannot make the output pipe: {e}")))?;
        let launched = match launch::start(&record, &rootfs.path(), &slot.dir, &self.parent, writer)
        {
            Ok(launched) => launched,
            Err(failure) => {
                rootfs.unmount();
                return Err(failure);
            }
        };
        self.watch(slot, &launched, reader);
        slot.update(&self.state, |r| {
            r.status = Status::Running;
            r.pid = Some(launched.pid());
            r.started = Some(state::now());
            r.finished = None;
            r.final_usage = None;
            r.restart_pending = false;
            r.cgroup = launched.cgroup().path().to_owned();
        });
        Ok(launched)
    }

    /// Keeps the pidfd for signals and copies the output into the log.
    fn watch(&self, slot: &Arc<Slot>, launched: &Launched, output: File) {
        *lock(&slot.pidfd) = launched.pidfd().try_clone_to_owned().ok();
        let log = slot.log.clone();
        log.pump_starting();
        let pumped = thread::Builder::new()
            .name(format!("log-{}", lock(&slot.record).id))
            .spawn(move || log.pump(output));
        if let Err(e) = pumped {
            self::log(&format!("cannot start the log thread: {e}"));
            slot.log.pump_ended();
        }
    }

    /// A cgroup of this id left from an earlier run would make the new one fail.
    fn remove_stale_cgroup(&self, id: &str) {
        if let Ok(stale) = self.parent.open_child(id) {
            if let Err(e) = stale.kill_and_remove(KILL_WAIT) {
                log(&format!("removing the stale cgroup {id}: {e}"));
            }
        }
    }

    /// Records how the container ended, after its last figures are read and its cgroup
    /// (with anything left in it) is gone.
    fn finish(&self, slot: &Arc<Slot>, running: Launched, exit: Exit) {
        let cg = running.cgroup();
        let last = usage::last(cg);
        let status = status_of(exit, last.oom_kills);
        if let Err(e) = cg.kill_and_remove(KILL_WAIT) {
            log(&format!("removing cgroup {}: {e}", cg.path().display()));
        }
        *lock(&slot.pidfd) = None;
        drop(running);
        // Every process is gone, so the output pipe has no writer left: the pump is at
        // its end, and the log is whole before the end is recorded.
        slot.log.wait_drained(LOG_DRAIN_WAIT);
        ContainerRootfs::new(&slot.dir).unmount();
        let record = slot.update(&self.state, |r| {
            r.status = status;
            r.pid = None;
            r.finished = Some(state::now());
            r.final_usage = Some(last);
            r.restart_pending = r.wants_restart();
        });
        log(&format!(
            "container {} {}",
            record.id,
            crate::format::status_long(status)
        ));
    }

    /// Starts the container again when its policy says so, after a pause that doubles
    /// with each restart; a stop or removal during the pause cancels it.
    fn restart(&self, slot: &Arc<Slot>) -> Option<Launched> {
        let record = slot.snapshot();
        if !record.restart_pending {
            return None;
        }
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << record.restart_count.min(16))
            .min(MAX_BACKOFF);
        let launched = if slot.wait_until(backoff, |r| r.stop_requested) {
            None
        } else {
            self.launch(slot)
                .map_err(|f| log(&format!("restarting {}: {}", record.id, f.message)))
                .ok()
        };
        slot.update(&self.state, |r| {
            r.restart_pending = false;
            if launched.is_some() {
                r.restart_count += 1;
            }
        });
        launched
    }

    // ---- stop, kill, remove ----------------------------------------------------------

    /// SIGTERM to every process, SIGKILL to what is left after `timeout`; `None` sends
    /// SIGKILL at once. Returns when the end is recorded.
    fn stop(&self, slot: &Arc<Slot>, timeout: Option<Duration>) -> Result<ContainerView, Failure> {
        let record = slot.update(&self.state, |r| {
            r.stop_requested = true;
            r.restart_pending = false;
        });
        if record.status.is_live() {
            if let Ok(cg) = Cgroup::open(&record.cgroup) {
                let gentle = timeout.is_some_and(|timeout| {
                    let _ = cg.signal_subtree(Signal::SIGTERM);
                    slot.ended(timeout)
                });
                if !gentle {
                    let _ = cg.kill();
                }
            }
            if !slot.ended(KILL_WAIT) {
                return Err(Failure::runtime(format!(
                    "container {} did not end within {}s of SIGKILL",
                    record.id,
                    KILL_WAIT.as_secs()
                )));
            }
        }
        Ok(self.view(slot))
    }

    fn kill(&self, slot: &Arc<Slot>, signal: i32) -> Result<(), Failure> {
        let signal = Signal::try_from(signal)
            .map_err(|_| Failure::bad_input(format!("unknown signal {signal}")))?;
        let record = slot.snapshot();
        if !record.status.is_live() {
            return Err(Failure::conflict(format!(
                "container {} is not running",
                record.id
            )));
        }
        if signal == Signal::SIGKILL {
            return self.stop(slot, None).map(drop);
        }
        let pidfd = lock(&slot.pidfd);
        let Some(pidfd) = pidfd.as_ref() else {
            return Err(Failure::conflict(format!(
                "container {} is not running",
                record.id
            )));
        };
        pidfd_send_signal(pidfd, signal).map_err(|e| {
            Failure::runtime(format!("signal {signal} to container {}: {e}", record.id))
        })
    }

    fn remove(&self, slot: &Arc<Slot>, force: bool) -> Result<(), Failure> {
        // A refused removal leaves the container as it was: stop_requested would cancel
        // its restart policy.
        let record = slot.try_update(&self.state, |r| {
            if r.status.is_live() && !force {
                return Err(Failure::conflict(format!(
                    "container {} is running: stop it first, or use qube rm -f",
                    r.id
                )));
            }
            r.stop_requested = true;
            Ok(())
        })?;
        if record.status.is_live() {
            self.stop(slot, None)?;
        }
        ContainerRootfs::new(&slot.dir).remove()?;
        fs::remove_dir_all(&slot.dir)
            .map_err(|e| Failure::runtime(state::annotate(e, "remove", &slot.dir).to_string()))?;
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, slot));
        Ok(())
    }

    /// Stops every running container (at daemon exit, when asked to).
    pub fn stop_all(self: &Arc<Self>, timeout: Duration) {
        let stoppers: Vec<_> = self
            .all()
            .into_iter()
            .filter(|s| lock(&s.record).status.is_live())
            .map(|slot| {
                let me = self.clone();
                thread::spawn(move || me.stop(&slot, Some(timeout)).map(drop))
            })
            .collect();
        for stopper in stoppers {
            if let Ok(Err(failure)) = stopper.join() {
                log(&failure.message);
            }
        }
    }

    // ---- logs ------------------------------------------------------------------------

    fn logs(
        &self,
        target: &str,
        follow: bool,
        send: &mut dyn FnMut(Reply) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let slot = match self.find(target) {
            Ok(slot) => slot,
            Err(failure) => return send(Reply::Failed(failure)),
        };
        let running = lock(&slot.record).status.is_live();
        let (stored, next) = slot.log.read(follow, running);
        // In pieces, so no reply line grows with the log's size.
        for piece in stored.chunks(LOG_CHUNK) {
            send(Reply::LogChunk {
                data: piece.to_vec(),
            })?;
        }
        if let Some(next) = next {
            for data in next {
                send(Reply::LogChunk { data })?;
            }
        }
        send(Reply::LogEnd)
    }

    // ---- after a daemon restart ------------------------------------------------------

    /// Loads every record: running containers are adopted again or, when their process is
    /// gone, marked as ended; then cgroups no container owns are killed and removed; then
    /// the supervisors start: of adopted containers, and of those whose policy restarts
    /// them.
    pub fn reconcile(self: &Arc<Self>) {
        let loaded = match self.state.load_all() {
            Ok(loaded) => loaded,
            Err(e) => {
                log(&format!("reading the state directory: {e}"));
                Vec::new()
            }
        };
        let mut loaded: Vec<Record> = loaded
            .into_iter()
            .filter_map(|r| r.map_err(|e| log(&format!("skipping a record: {e}"))).ok())
            .collect();
        loaded.sort_by_key(|r| r.created);
        let mut supervisors = Vec::new();
        for record in loaded {
            let dir = self.state.container(&record.id);
            let live = record.status.is_live();
            let slot = Arc::new(Slot::new(record, dir, self.log_size));
            lock(&self.slots).push(slot.clone());
            let start = if live { self.recover(&slot) } else { None };
            if let Some(start) = start {
                supervisors.push((slot, start));
            }
        }
        // Only once no supervisor runs: a starting container has its cgroup before its
        // record says it runs, and the sweep would kill it as an orphan.
        self.remove_orphan_cgroups();
        for (slot, start) in supervisors {
            if let Err(f) = self.supervise_in_thread(&slot, start) {
                log(&f.message);
            }
        }
    }

    /// Takes a container that ran under an earlier daemon over again, or records its end;
    /// returns how its supervisor is to begin, if it needs one.
    fn recover(&self, slot: &Arc<Slot>) -> Option<Start> {
        let record = slot.snapshot();
        let adopted = record
            .pid
            .ok_or_else(|| "no pid was recorded".to_owned())
            .and_then(|pid| launch::adopt(pid, &record.cgroup, &slot.dir));
        match adopted {
            Ok(launched) => {
                log(&format!(
                    "adopted container {} (pid {})",
                    record.id,
                    launched.pid()
                ));
                match logs::reopen_pipe(&slot.dir) {
                    Ok(output) => self.watch(slot, &launched, output),
                    Err(e) => {
                        log(&format!("container {}: its output is lost: {e}", record.id));
                        *lock(&slot.pidfd) = launched.pidfd().try_clone_to_owned().ok();
                    }
                }
                Some(Start::Adopted(launched))
            }
            Err(why) => {
                log(&format!("container {} is gone ({why})", record.id));
                // By how it ended, now known: on-failure does not restart an exit 0.
                let ended = self.mark_lost(slot);
                ended.restart_pending.then_some(Start::Restart)
            }
        }
    }

    /// Records the end of a container that ended while no daemon watched it: how, from
    /// the exit status file its pid 1 wrote; OOM-killed if its cgroup says so. Returns
    /// the new record, with `restart_pending` set when its policy restarts it.
    fn mark_lost(&self, slot: &Arc<Slot>) -> Record {
        let record = slot.snapshot();
        let last = Cgroup::open(&record.cgroup).ok().map(|cg| {
            let last = usage::last(&cg);
            if let Err(e) = cg.kill_and_remove(KILL_WAIT) {
                log(&format!("removing cgroup {}: {e}", cg.path().display()));
            }
            last
        });
        ContainerRootfs::new(&slot.dir).unmount();
        let exit = launch::recorded_exit(&slot.dir).unwrap_or_default();
        let oom_kills = last.map_or(0, |u| u.oom_kills);
        let exit = Exit {
            oom_killed: exit.oom_killed || oom_kills > 0,
            ..exit
        };
        slot.update(&self.state, |r| {
            r.status = status_of(exit, oom_kills);
            r.pid = None;
            r.finished = Some(state::now());
            r.final_usage = last.or(r.final_usage);
            r.restart_pending = r.wants_restart();
        })
    }

    fn remove_orphan_cgroups(&self) {
        let owned: HashSet<String> = self
            .all()
            .iter()
            .map(|s| s.snapshot())
            .filter(|r| r.status.is_live())
            .map(|r| r.id)
            .collect();
        let children = match self.parent.children() {
            Ok(children) => children,
            Err(e) => return log(&format!("listing {}: {e}", self.parent.path().display())),
        };
        for orphan in children.into_iter().filter(|c| !owned.contains(c)) {
            let removed = self
                .parent
                .open_child(&orphan)
                .and_then(|cg| cg.kill_and_remove(KILL_WAIT));
            match removed {
                Ok(()) => log(&format!("removed cgroup {orphan}, which no container owns")),
                Err(e) => log(&format!("removing orphan cgroup {orphan}: {e}")),
            }
        }
    }
}

/// How the container ended: OOM-killed when the kernel says the OOM killer ended it.
fn status_of(exit: Exit, oom_kills: u64) -> Status {
    let killed_by_oom = exit.oom_killed || (exit.signal == Some(9) && oom_kills > 0);
    match exit {
        _ if killed_by_oom => Status::OomKilled,
        Exit {
            code: Some(code), ..
        } => Status::Exited { code },
        Exit {
            signal: Some(signal),
            ..
        } => Status::Killed { signal },
        _ => Status::Lost,
    }
}

/// Sends a signal through a pidfd: to that process, never to one that reused its pid.
fn pidfd_send_signal(pidfd: &OwnedFd, signal: Signal) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes an fd we own (valid for the call), a signal number,
    // a null siginfo pointer (the kernel fills in a default) and flags 0; it touches no
    // memory of ours.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as nix::libc::c_int,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_change_leaves_the_record_as_it_was_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::create(tmp.path()).unwrap();
        let record = state::tests::sample_record("0123456789ab");
        let dir = state.container(&record.id);
        fs::create_dir(&dir).unwrap();
        state.save(&record).unwrap();
        let slot = Slot::new(record.clone(), dir, 1024);

        let refused = slot.try_update(&state, |r| {
            r.stop_requested = true;
            Err(Failure::conflict("refused"))
        });
        assert_eq!(refused.unwrap_err().message, "refused");
        assert_eq!(slot.snapshot(), record);
        let saved: Vec<Record> = state.load_all().unwrap().into_iter().flatten().collect();
        assert_eq!(saved, vec![record]);

        let kept = slot.try_update(&state, |r| {
            r.stop_requested = true;
            Ok(())
        });
        assert!(kept.unwrap().stop_requested);
        let saved: Vec<Record> = state.load_all().unwrap().into_iter().flatten().collect();
        assert!(saved[0].stop_requested);
    }

    #[test]
    fn oom_kills_win_over_the_signal() {
        let killed = Exit {
            signal: Some(9),
            ..Exit::default()
        };
        assert_eq!(status_of(killed, 1), Status::OomKilled);
        assert_eq!(status_of(killed, 0), Status::Killed { signal: 9 });
        let exited = Exit {
            code: Some(3),
            ..Exit::default()
        };
        assert_eq!(status_of(exited, 0), Status::Exited { code: 3 });
        assert_eq!(status_of(Exit::default(), 0), Status::Lost);
    }
}
