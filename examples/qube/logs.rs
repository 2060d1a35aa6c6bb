//! A container's output: its stdout and stderr go into a FIFO in its state directory,
//! and the daemon copies what comes out into `output.log`, bounded in size.
//!
//! The container holds the FIFO open for reading and writing, so it is never without a
//! reader: while no daemon runs, its output waits in the pipe (a full pipe blocks the
//! writer, it never kills it with SIGPIPE), and the next daemon reopens the FIFO and
//! carries on. The log keeps `output.log` and one older `output.log.1`, each at most
//! the configured size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::Mode;

const FIFO: &str = "output.fifo";
const CURRENT: &str = "output.log";
const OLDER: &str = "output.log.1";

/// Makes a fresh FIFO; returns the daemon's read end and the container's end (read and
/// write, so the container never loses its reader).
pub fn create_pipe(dir: &Path) -> io::Result<(File, File)> {
    let path = dir.join(FIFO);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(io::Error::from)?;
    let reader = open_reader(&path)?;
    let writer = OpenOptions::new().read(true).write(true).open(&path)?;
    Ok((reader, writer))
}

/// Opens the FIFO of a container that kept running while no daemon read it.
pub fn reopen_pipe(dir: &Path) -> io::Result<File> {
    open_reader(&dir.join(FIFO))
}

/// Opens the read end without waiting for a writer, then makes reads block again.
fn open_reader(path: &Path) -> io::Result<File> {
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let flags = OFlag::from_bits_truncate(fcntl(&reader, FcntlArg::F_GETFL)?);
    fcntl(&reader, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(reader)
}

/// One container's log, shared by its pump and the `logs` requests.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    max: u64,
    inner: Mutex<Inner>,
    drained: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    file: Option<File>,
    size: u64,
    followers: Vec<Sender<Vec<u8>>>,
    /// Pumps started and not yet at the end of their output.
    pumps: usize,
}

impl Log {
    /// The log in a container's directory; each of its two files stays under `max` bytes.
    pub fn new(dir: &Path, max: u64) -> Log {
        let size = fs::metadata(dir.join(CURRENT)).map_or(0, |m| m.len());
        Log {
            dir: dir.to_owned(),
            max: max.max(1),
            inner: Mutex::new(Inner {
                size,
                ..Inner::default()
            }),
            drained: Condvar::new(),
        }
    }

    /// Counts a pump about to start, before its thread runs, so that
    /// [`wait_drained`](Log::wait_drained) cannot miss it.
    pub fn pump_starting(&self) {
        self.lock().pumps += 1;
    }

    /// Waits until every pump has copied all the output (its writers are gone), so a
    /// container recorded as ended has its whole log.
    pub fn wait_drained(&self, timeout: Duration) {
        let inner = self.lock();
        let _ = self
            .drained
            .wait_timeout_while(inner, timeout, |inner| inner.pumps > 0);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies everything from `reader` into the log until every writer is gone; then
    /// ends the followers. Call [`pump_starting`](Log::pump_starting) first.
    pub fn pump(self: Arc<Log>, mut reader: File) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.append(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    crate::daemon::log(&format!("reading output in {}: {e}", self.dir.display()));
                    break;
                }
            }
        }
        self.pump_ended();
    }

    /// A pump is done (or never started): its followers end with it.
    pub fn pump_ended(&self) {
        let mut inner = self.lock();
        inner.followers.clear();
        inner.pumps = inner.pumps.saturating_sub(1);
        self.drained.notify_all();
    }

    /// Appends output, rotating when the current file would grow past the bound; chunks
    /// larger than the bound keep only their end.
    pub fn append(&self, mut data: &[u8]) {
        let mut inner = self.lock();
        inner.followers.retain(|f| f.send(data.to_vec()).is_ok());
        if data.len() as u64 > self.max {
            data = &data[data.len() - self.max as usize..];
        }
        if inner.size + data.len() as u64 > self.max {
            inner.file = None;
            let _ = fs::rename(self.dir.join(CURRENT), self.dir.join(OLDER));
            inner.size = 0;
        }
        if inner.file.is_none() {
            inner.file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join(CURRENT))
                .map_err(|e| crate::daemon::log(&format!("log {}: {e}", self.dir.display())))
                .ok();
        }
        if let Some(file) = inner.file.as_mut() {
            if file.write_all(data).is_ok() {
                inner.size += data.len() as u64;
            }
        }
    }

    /// The stored output and, when `follow`, a receiver of what comes next (closed when
    /// the container's output ends). Taken under one lock, so nothing is lost or doubled.
    pub fn read(&self, follow: bool, running: bool) -> (Vec<u8>, Option<Receiver<Vec<u8>>>) {
        let mut inner = self.lock();
        let mut stored = fs::read(self.dir.join(OLDER)).unwrap_or_default();
        stored.extend(fs::read(self.dir.join(CURRENT)).unwrap_or_default());
        let next = (follow && running).then(|| {
            let (tx, rx) = channel();
            inner.followers.push(tx);
            rx
        });
        (stored, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest_output() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Log::new(tmp.path(), 10);
        for chunk in [&b"0123"[..], b"4567", b"89ab", b"cdef"] {
            log.append(chunk);
        }
        let (stored, _) = log.read(false, false);
        assert_eq!(stored, b"0123456789abcdef");
        log.append(b"a chunk far longer than ten bytes");
        assert_eq!(log.read(false, false).0, b"89abcdef ten bytes");
    }

    #[test]
    fn a_fifo_carries_output_and_followers_get_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (reader, mut writer) = create_pipe(tmp.path()).unwrap();
        let log = Arc::new(Log::new(tmp.path(), 1 << 20));
        let (_, follower) = log.read(true, true);
        log.pump_starting();
        let pump = std::thread::spawn({
            let log = log.clone();
            move || log.pump(reader)
        });
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        log.wait_drained(Duration::from_secs(10));
        pump.join().unwrap();
        let follower = follower.unwrap();
        assert_eq!(follower.recv().unwrap(), b"hello\n");
        assert!(
            follower.recv().is_err(),
            "the follower ends with the output"
        );
        assert_eq!(log.read(false, false).0, b"hello\n");
    }
}
